"""The ze1 ciphertext format: parser robustness (hypothesis) and AAD construction."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keymgmt import CiphertextError, format_ciphertext, is_ciphertext, parse_ciphertext
from keymgmt.ciphertext import PREFIX, field_aad

dek_ids = st.binary(min_size=8, max_size=8)
nonces = st.binary(min_size=12, max_size=12)
cts = st.binary(min_size=16, max_size=300)


@given(dek_ids, nonces, cts)
def test_format_parse_roundtrip(dek_id: bytes, nonce: bytes, ct: bytes) -> None:
    text = format_ciphertext(dek_id, nonce, ct)
    assert text.startswith(PREFIX) and is_ciphertext(text) and text.isascii()
    p = parse_ciphertext(text)
    assert (p.version, p.dek_id, p.nonce, p.ct) == (1, dek_id, nonce, ct)
    assert p.header == b"\x01" + dek_id


@given(st.text(max_size=200))
def test_parser_never_raises_anything_but_ciphertext_error(s: str) -> None:
    try:
        p = parse_ciphertext(s)
    except CiphertextError:
        return
    assert s.startswith(PREFIX) and len(p.ct) >= 16 and len(p.dek_id) == 8


@given(st.binary(max_size=80))
def test_parser_on_arbitrary_payloads(raw: bytes) -> None:
    text = PREFIX + base64.b64encode(raw).decode()
    if len(raw) >= 1 + 8 + 12 + 16 and raw[0] == 1:
        assert parse_ciphertext(text).ct == raw[21:]
    else:
        with pytest.raises(CiphertextError):
            parse_ciphertext(text)


@given(dek_ids, nonces, cts, st.integers(min_value=2, max_value=255))
def test_unknown_format_version_refused(dek_id: bytes, nonce: bytes, ct: bytes, version: int) -> None:
    raw = bytes([version]) + dek_id + nonce + ct
    with pytest.raises(CiphertextError, match="unsupported"):
        parse_ciphertext(PREFIX + base64.b64encode(raw).decode())


@pytest.mark.parametrize("bad", [None, 42, b"ze1:AAAA", "", "ze1:", "ze2:AAAA", "ze1:!!!!", "ze1:AAAA"])
def test_bad_inputs(bad: object) -> None:
    with pytest.raises(CiphertextError):
        parse_ciphertext(bad)


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20),
       st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_aad_is_injective(d1: str, c1: str, p1: str, d2: str, c2: str, p2: str) -> None:
    # Length-prefixing: distinct (dataset, column, pk) never share associated data.
    h = b"\x01" + b"\x00" * 8
    if (d1, c1, p1) != (d2, c2, p2):
        assert field_aad(h, d1, c1, p1) != field_aad(h, d2, c2, p2)
