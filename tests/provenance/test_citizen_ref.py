"""citizen_ref: normalisation, checksum, MAC under the blind-index key."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import InvalidNationalId, citizen_ref, normalise_national_id

KEY = b"k" * 32


def test_known_valid_ids_normalise() -> None:
    assert normalise_national_id("A123456789") == "A123456789"
    assert normalise_national_id(" a1234 56789\t") == "A123456789"


def test_ref_is_hmac_of_normalised_id() -> None:
    mac = hmac.new(KEY, b"A123456789", hashlib.sha256).digest()
    want = "cr_" + base64.b32encode(mac).decode().rstrip("=")
    assert citizen_ref("a123456789", KEY) == want
    assert citizen_ref(" A123456789 ", KEY) == want
    assert len(want) == 55


def test_ref_depends_on_key() -> None:
    assert citizen_ref("A123456789", KEY) != citizen_ref("A123456789", b"j" * 32)


@pytest.mark.parametrize("bad", ["", "A12345678", "A1234567890", "1123456789", "A323456789", "A12345678X"])
def test_bad_format_is_refused_without_echo(bad: str) -> None:
    with pytest.raises(InvalidNationalId) as exc:
        normalise_national_id(bad)
    assert "format" in str(exc.value) or "letter" in str(exc.value)
    if bad:
        assert bad not in str(exc.value)


def test_bad_checksum_is_refused() -> None:
    with pytest.raises(InvalidNationalId, match="check digit"):
        normalise_national_id("A123456788")


def test_short_key_refused() -> None:
    with pytest.raises(InvalidNationalId, match="key"):
        citizen_ref("A123456789", b"short")


@given(st.from_regex(r"[A-Z][12][0-9]{8}", fullmatch=True))
def test_exactly_one_check_digit_is_valid(nid: str) -> None:
    body = nid[:9]
    valid = []
    for d in "0123456789":
        try:
            normalise_national_id(body + d)
            valid.append(d)
        except InvalidNationalId:
            pass
    assert len(valid) == 1


@given(letter=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), kind=st.sampled_from("12890"),
       body=st.text(alphabet="0123456789", min_size=7, max_size=7))
def test_check_digit_completes_exactly_one_valid_id(letter: str, kind: str, body: str) -> None:
    from contracts import national_id_check_digit

    prefix = letter + kind + body
    digit = national_id_check_digit(prefix)
    valid = []
    for d in "0123456789":
        try:
            normalise_national_id(prefix + d)
            valid.append(d)
        except InvalidNationalId:
            pass
    assert valid == [digit]


@pytest.mark.parametrize("bad", ["", "A1234567", "a12345678", "A32345678", "A1234567X", "112345678", "A123456789",
                                 None])
def test_check_digit_refuses_what_is_not_a_prefix(bad) -> None:  # noqa: ANN001
    from contracts import national_id_check_digit

    with pytest.raises(InvalidNationalId):
        national_id_check_digit(bad)
