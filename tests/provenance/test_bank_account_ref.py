"""bank_account_ref: a keyed reference to a payout account, so events never carry account numbers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import InvalidBankAccount, ProvenanceEvent, bank_account_ref, citizen_ref
from contracts.bank_account import BANK_ACCOUNT_REF_PATTERN

KEY = bytes(range(32))


@given(st.text(alphabet="0123456789", min_size=6, max_size=20), st.sampled_from(["", " ", "-"]))
def test_the_same_digits_give_the_same_reference_however_written(digits: str, sep: str) -> None:
    written = sep.join([digits[:3], digits[3:]]) if sep else digits
    ref = bank_account_ref(written, KEY)
    assert ref == bank_account_ref(digits, KEY)
    assert re.fullmatch(BANK_ACCOUNT_REF_PATTERN, ref)
    assert digits not in ref


def test_reference_depends_on_the_key_and_differs_from_a_citizen_ref() -> None:
    assert bank_account_ref("8120000123456789", KEY) != bank_account_ref("8120000123456789", bytes(32))
    assert bank_account_ref("8120000123456789", KEY) != bank_account_ref("8120000123456780", KEY)
    # Same key, domain-separated: a reference can never double as a citizen_ref.
    assert bank_account_ref("1234567890", KEY)[3:] != citizen_ref("A123456789", KEY)[3:]


@pytest.mark.parametrize("bad", ["", "12345", "1" * 21, "812-00001234567x", "transfer to 0912345678", None])
def test_what_is_not_an_account_is_refused_without_echoing_it(bad) -> None:  # noqa: ANN001
    with pytest.raises(InvalidBankAccount) as exc:
        bank_account_ref(bad, KEY)
    assert not bad or str(bad) not in str(exc.value)


def test_short_keys_are_refused() -> None:
    with pytest.raises(InvalidBankAccount):
        bank_account_ref("8120000123456789", b"short")


def test_events_accept_only_the_reference_shape() -> None:
    base = {"type": "pii.update", "actor": "emp-1", "fields": ["bank_account"], "purpose": "bank_account_change"}
    ok = ProvenanceEvent.model_validate({**base, "bank_account_ref": bank_account_ref("8120000123456789", KEY)})
    assert ok.bank_account_ref and b"bank_account_ref" in ok.canonical_bytes()
    with pytest.raises(ValueError, match="bank_account_ref"):
        ProvenanceEvent.model_validate({**base, "bank_account_ref": "8120000123456789"})
    # Events without one keep their canonical bytes (existing ledgers verify unchanged).
    assert b"bank_account_ref" not in ProvenanceEvent.model_validate(base).canonical_bytes()
