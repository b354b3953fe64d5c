"""What only the SQLite driver promises: its pragmas, its lock, its batch insert, its WAL, its copies.

The behaviour every driver shares is in ``test_store_conformance.py``; this file looks at the
SQLite file itself (with raw SQL where an inspector would).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provenance_testkit import TreeIntegrator, make_event, prepared

from contracts.provenance_event import canonical_bytes
from provenance import Ledger, LedgerUnavailable, merkle
from provenance.sqlite_store import SqliteLedgerStore


def test_durability_pragmas(tmp_path: Path) -> None:
    """Durable before acknowledge: the writer's COMMIT fsyncs the WAL; it never merges inside COMMIT."""
    store = SqliteLedgerStore(tmp_path / "l.db")
    store.open("o", "k")
    try:
        writer = store._db
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert store._reader().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_another_writer_holding_the_lock_fails_the_append_closed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(store=SqliteLedgerStore(path, timeout=0.05), signing_key=Ed25519PrivateKey.generate(),
                origin="o") as ledger:
        ledger.append([make_event(1)])
        # Another process holds the write lock (a real SQLite lock, not a mock): our write must fail closed.
        other = sqlite3.connect(path, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LedgerUnavailable, match="write failed"):
                ledger.append([make_event(2)])
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert ledger.size == 1
        assert ledger.append([make_event(2)])[0].seq == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
                      min_size=1, max_size=12))
def test_batch_insert_stores_exact_bytes(ledger: Ledger, ledger_path: Path, units: list[str]) -> None:
    """The set-based batch insert slices bodies and hashes out of concatenated blobs: every stored
    body must be byte-identical to its canonical form (multi-byte text included) and stay a BLOB."""
    start = ledger.size
    evs = [make_event(start + i, actor={"id": "emp-1", "unit": u, "agency": "BLI", "roles": ["clerk"]})
           for i, u in enumerate(units)]
    receipts = ledger.append(evs)
    db = sqlite3.connect(ledger_path)
    try:
        for r, e in zip(receipts, evs, strict=True):
            body, leaf, kind = db.execute("SELECT body, leaf_hash, typeof(body) FROM entries WHERE seq = ?",
                                          (r.seq,)).fetchone()
            assert kind == "blob"
            assert body == canonical_bytes(e)
            assert leaf == r.leaf_hash == merkle.leaf_hash(body)
        assert ledger.root() == merkle.root_from_leaf_hashes(
            [row[0] for row in db.execute("SELECT leaf_hash FROM entries ORDER BY seq")])
    finally:
        db.close()


def test_upper_tree_nodes_live_in_their_own_table(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "l.db")
    store.open("o", "k")
    store.append([prepared(i) for i in range(300)], TreeIntegrator())
    store.close()
    db = sqlite3.connect(tmp_path / "l.db")
    levels = {table: {lv for (lv,) in db.execute(f"SELECT DISTINCT id & 63 FROM {table}")}  # noqa: S608
              for table in ("nodes", "upper_nodes")}
    db.close()
    assert levels == {"nodes": set(range(6)), "upper_nodes": {6, 7, 8}}


def test_wal_is_merged_in_the_background(tmp_path: Path) -> None:
    """The appender's connection never checkpoints inside COMMIT; a background connection merges the
    WAL into the main file once enough has been appended, so the WAL cannot grow without bound."""
    path = tmp_path / "wal.db"
    with Ledger(path, Ed25519PrivateKey.generate(), "test/wal", checkpoint_every=10**9) as led:
        size_before = path.stat().st_size
        n = 0
        while n < 40_000:  # ~20 MiB of canonical events: past the merge threshold
            led.append([make_event(n + i) for i in range(2_000)])
            n += 2_000
        deadline = time.monotonic() + 10
        while path.stat().st_size < size_before + (8 << 20) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size >= size_before + (8 << 20), "the WAL was never merged into the main file"
    reopened = sqlite3.connect(path)
    assert reopened.execute("SELECT count(*) FROM entries").fetchone()[0] == 40_000
    reopened.close()


def test_a_copy_is_one_self_contained_file_wherever_it_lives(tmp_path: Path) -> None:
    """The online backup folds the WAL into the copy; paths that mean something in a URI still work."""
    odd = tmp_path / "a dir?with#odd%chars"
    store = SqliteLedgerStore(odd / "ledger.db")
    store.open("o", "k")
    store.append([prepared(i) for i in range(40)], TreeIntegrator())
    assert (odd / "ledger.db-wal").exists()  # the rows are still in the WAL
    store.backup_to(odd / "copy.db")
    store.close()
    assert not (odd / "copy.db-wal").exists()
    db = sqlite3.connect(odd / "copy.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 40
    db.close()


def test_copying_a_ledger_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LedgerUnavailable, match="cannot copy"):
        SqliteLedgerStore(tmp_path / "none.db").backup_to(tmp_path / "copy.db")
    assert not (tmp_path / "none.db").exists()  # read-only: a copy never creates the source
