"""Blind indexes: normalisation, domain separation, versions, lookups."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import keymgmt
from keymgmt import BlindIndexer, BlindIndexKeys, KeyMgmtError, normalise
from keymgmt.blind_index import index_version


def test_normalise_identifiers() -> None:
    assert normalise(" a123-456 789 ") == "A123456789"
    assert normalise("Ａ１２３") == "A123"  # full-width digits typed on a CJK keyboard


def test_index_shape_and_domain_separation() -> None:
    bi = BlindIndexer(os.urandom(32), 3, length=8)
    a = bi.compute("ds", "national_id", "A123456789")
    assert a.startswith("3:") and len(a) == 2 + 16 and index_version(a) == 3
    assert bi.compute("ds", "national_id", "a123456789 ") == a
    assert bi.compute("ds", "bank_account", "A123456789") != a
    assert bi.compute("other", "national_id", "A123456789") != a
    assert "A123456789" not in a
    assert bi.matches("ds", "national_id", "A123456789", a)
    assert not bi.matches("ds", "national_id", "A123456788", a)
    assert BlindIndexer(os.urandom(32), 3).compute("ds", "national_id", "A123456789") != a


def test_length_bounds() -> None:
    with pytest.raises(KeyMgmtError):
        BlindIndexer(os.urandom(32), 1, length=3)
    with pytest.raises(KeyMgmtError):
        BlindIndexer(b"short", 1)
    assert len(BlindIndexer(os.urandom(32), 1, length=32).compute("d", "c", "v")) == 2 + 64


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_distinct_values_distinct_indexes(a: str, b: str) -> None:
    bi = BlindIndexer(b"k" * 32, 1, length=16)
    if normalise(a) != normalise(b):
        assert bi.compute("d", "c", a) != bi.compute("d", "c", b)


def test_keys_follow_provider_versions(local_ring: keymgmt.LocalKeyring) -> None:
    keys = BlindIndexKeys(local_ring)
    v1 = keys.current().compute("d", "c", "x")
    local_ring.rotate(keymgmt.DEFAULT_BLIND_INDEX_KEY)
    keys.refresh()
    assert keys.current().version == 2
    assert [b.version for b in keys.trusted()] == [1, 2]
    assert keys.trusted()[0].compute("d", "c", "x") == v1
    local_ring.set_min_decryption_version(keymgmt.DEFAULT_BLIND_INDEX_KEY, 2)
    keys.refresh()
    assert [b.version for b in keys.trusted()] == [2]


@given(st.text(min_size=1, max_size=30))
def test_bulk_indexer_equals_compute(value: str) -> None:
    bi = BlindIndexer(b"k" * 32, 4, length=8)
    assert bi.column_indexer("ds", "national_id")(value) == bi.compute("ds", "national_id", value)
