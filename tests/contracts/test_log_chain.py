"""The log hash chain: links are SHA-256 over the previous link and the RFC 8785 bytes of the record;
any alteration, removal, insertion or reordering is named at the first record that no longer fits."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.log_chain import GENESIS, link, record_bytes, verify_chain


def _chain(records: list[dict]) -> list[tuple[int, dict, bytes]]:
    out, previous = [], GENESIS
    for i, record in enumerate(records, start=1):
        previous = link(previous, record)
        out.append((i, record, previous))
    return out


def test_a_link_is_sha256_of_previous_link_and_canonical_json() -> None:
    # RFC 8785: keys sorted, no whitespace, so the bytes are the same whatever the insertion order.
    assert record_bytes({"b": 1, "a": "x"}) == b'{"a":"x","b":1}'
    assert link(GENESIS, {"b": 1, "a": "x"}) == hashlib.sha256(bytes(32) + b'{"a":"x","b":1}').digest()


def test_a_link_refuses_a_previous_link_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        link(b"short", {})


def test_an_intact_chain_verifies_and_returns_its_head() -> None:
    chain = _chain([{"seq": i, "v": f"r{i}"} for i in range(5)])
    broken, head, checked = verify_chain(chain)
    assert broken is None and head == chain[-1][2] and checked == 5


@pytest.mark.parametrize("tamper", ["alter", "remove", "swap", "insert"])
def test_tampering_is_named_at_the_first_record_that_no_longer_fits(tamper: str) -> None:
    chain = _chain([{"seq": i} for i in range(1, 7)])
    if tamper == "alter":
        chain[2] = (3, {"seq": 99}, chain[2][2])
    elif tamper == "remove":
        del chain[2]
    elif tamper == "swap":
        chain[2], chain[3] = chain[3], chain[2]
    else:
        chain.insert(2, (99, {"seq": 99}, bytes(32)))
    broken, _, checked = verify_chain(chain)
    assert broken is not None and checked == 2
    assert broken.position == chain[2][0]


def test_a_pruned_chain_verifies_from_its_prune_mark() -> None:
    chain = _chain([{"seq": i} for i in range(1, 7)])
    mark = chain[2][2]  # the link of the last deleted record
    assert verify_chain(chain[3:], start=mark)[0] is None
    assert verify_chain(chain[3:])[0] is not None  # but not from genesis


_JSON_SAFE_INT = st.integers(-(2**53) + 1, 2**53 - 1)  # RFC 8785 refuses integers it cannot represent exactly


@given(st.lists(st.dictionaries(st.text(max_size=8), _JSON_SAFE_INT | st.text(max_size=8), max_size=4),
                min_size=1, max_size=8), st.data())
def test_any_single_alteration_breaks_the_chain(records: list[dict], data: st.DataObject) -> None:
    chain = _chain(records)
    i = data.draw(st.integers(0, len(chain) - 1))
    pos, record, stored = chain[i]
    altered = dict(record, __tampered__=True)
    chain[i] = (pos, altered, stored)
    broken, _, _ = verify_chain(chain)
    assert broken is not None and broken.position == pos
