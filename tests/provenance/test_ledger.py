"""The SQLite ledger: appends, idempotency, proofs against checkpoints, reopen, durability settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provenance_testkit import cref, make_event

from contracts.provenance_event import canonical_bytes
from provenance import CheckpointUnavailable, Ledger, LedgerUnavailable, ProvenanceError, UnknownEntry, merkle


def test_append_returns_sequential_receipts(ledger: Ledger) -> None:
    evs = [make_event(i) for i in range(10)]
    rs = ledger.append(evs)
    assert [r.seq for r in rs] == list(range(10))
    assert all(r.leaf_hash == merkle.leaf_hash(canonical_bytes(e)) for r, e in zip(rs, evs, strict=True))
    assert ledger.size == 10
    assert ledger.get(3).event == evs[3]


def test_duplicate_event_id_is_idempotent(ledger: Ledger) -> None:
    e = make_event(1)
    first = ledger.append([e])[0]
    again = ledger.append([make_event(2), e, make_event(3)])
    assert again[1].seq == first.seq and again[1].leaf_hash == first.leaf_hash and again[1].duplicate
    assert [r.seq for r in again] == [1, 0, 2]
    assert ledger.size == 3
    within = ledger.append([make_event(9, event_id="same-id"), make_event(10, event_id="same-id")])
    assert within[0].seq == within[1].seq == 3 and ledger.size == 4


def test_root_matches_recomputation_and_proofs_verify(ledger: Ledger) -> None:
    evs = [make_event(i) for i in range(137)]
    for i in range(0, 137, 20):
        ledger.append(evs[i : i + 20])
    cp = ledger.checkpoint()
    assert cp.size == 137
    leaves = [merkle.leaf_hash(canonical_bytes(e)) for e in evs]
    assert cp.root == merkle.root_from_leaf_hashes(leaves) == ledger.root()
    for i in (0, 1, 64, 127, 128, 136):
        merkle.verify_inclusion(leaves[i], i, 137, ledger.inclusion_proof(i, 137), cp.root)
    for s1 in (1, 2, 50, 64, 100, 136, 137):
        merkle.verify_consistency(s1, 137, ledger.consistency_proof(s1, 137), ledger.root(s1), cp.root)
    with pytest.raises(UnknownEntry):
        ledger.inclusion_proof(137, 137)
    with pytest.raises(UnknownEntry):
        ledger.root(500)


def test_checkpoints_every_n_events(ledger: Ledger) -> None:
    for i in range(0, 120, 10):
        ledger.append([make_event(j) for j in range(i, i + 10)])
    sizes = [row[0] for row in ledger.raw_checkpoints()]
    assert sizes == [50, 100]
    assert ledger.latest_checkpoint().size == 100


def test_checkpoint_every_t_seconds(ledger_path: Path, signing_key: Ed25519PrivateKey) -> None:
    with Ledger(ledger_path, signing_key, "o", checkpoint_every=10_000, checkpoint_interval=0.0) as led:
        led.append([make_event(1)])
        assert led.latest_checkpoint().size == 1


def test_with_a_remote_key_checkpoints_are_made_off_the_append_path(ledger_path: Path,
                                                                    signing_key: Ed25519PrivateKey) -> None:
    """checkpoint_in_append=False (a key server signs): appends never sign; the recorder's timer
    calls maybe_checkpoint, which still honours "every N events" and "every T seconds"."""
    with Ledger(ledger_path, signing_key, "o", checkpoint_every=5, checkpoint_interval=3600,
                checkpoint_in_append=False) as led:
        led.append([make_event(j) for j in range(7)])
        assert list(led.raw_checkpoints()) == []
        assert led.maybe_checkpoint().size == 7
        led.append([make_event(7)])
        assert led.maybe_checkpoint() is None  # 1 waiting, interval not reached
        led.checkpoint_interval = 0.0
        assert led.maybe_checkpoint().size == 8


def test_a_signer_that_fails_defers_the_checkpoint_not_the_append(ledger_path: Path) -> None:
    class Unreachable:  # the Ed25519Signer protocol, as a key server that has gone away
        def __init__(self) -> None:
            self.key = Ed25519PrivateKey.generate()
            self.down = False

        def public_key(self):  # noqa: ANN202
            return self.key.public_key()

        def sign(self, data: bytes) -> bytes:
            if self.down:
                raise ConnectionError("key server unreachable")
            return self.key.sign(data)

    signer = Unreachable()
    with Ledger(ledger_path, signer, "o", checkpoint_every=2) as led:
        led.append([make_event(0), make_event(1)])
        assert led.latest_checkpoint().size == 2
        signer.down = True
        assert [r.seq for r in led.append([make_event(2), make_event(3)])] == [2, 3]
        assert led.latest_checkpoint().size == 2 and "ConnectionError" in led.checkpoint_error
        with pytest.raises(CheckpointUnavailable):
            led.checkpoint()
        assert led.checkpoint_or_latest().size == 2
        signer.down = False
        assert led.checkpoint().size == 4 and led.checkpoint_error is None


def test_checkpoint_on_demand_is_idempotent(ledger: Ledger) -> None:
    ledger.append([make_event(1), make_event(2)])
    a = ledger.checkpoint()
    b = ledger.checkpoint()
    assert a.note == b.note and a.size == 2
    assert a.note.startswith("ztcp.test/provenance\n2\n")


def test_empty_ledger_has_no_checkpoint(ledger: Ledger) -> None:
    assert ledger.latest_checkpoint() is None
    assert ledger.root() == merkle.EMPTY_ROOT
    with pytest.raises(UnknownEntry, match="empty"):
        ledger.checkpoint()


def test_reopen_restores_tree(ledger_path: Path, signing_key: Ed25519PrivateKey) -> None:
    with Ledger(ledger_path, signing_key, "o") as led:
        led.append([make_event(i) for i in range(21)])
        root = led.root()
    with Ledger(ledger_path, signing_key, "o") as led:
        assert led.size == 21 and led.root() == root
        led.append([make_event(i) for i in range(21, 40)])
        leaves = [merkle.leaf_hash(canonical_bytes(e.event)) for e in led.entries()]
        assert led.root() == merkle.root_from_leaf_hashes(leaves)


def test_wrong_origin_refused(ledger_path: Path, signing_key: Ed25519PrivateKey) -> None:
    Ledger(ledger_path, signing_key, "a").close()
    with pytest.raises(ProvenanceError, match="origin"):
        Ledger(ledger_path, signing_key, "b")


def test_durability_pragmas(ledger: Ledger) -> None:
    db = ledger.raw_db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_citizen_entries_filtered_by_ref_and_time(ledger: Ledger) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    ledger.append([make_event(i, time=t0 + timedelta(days=i)) for i in range(9)])
    mine = ledger.citizen_entries(cref(0))
    assert [e.seq for e in mine] == [0, 3, 6]
    window = ledger.citizen_entries(cref(0), since=t0 + timedelta(days=1), until=t0 + timedelta(days=6))
    assert [e.seq for e in window] == [3]


def test_write_failure_raises_ledger_unavailable(ledger: Ledger, ledger_path: Path) -> None:
    ledger.append([make_event(1)])
    # Another process holds the write lock (a real SQLite lock, not a mock): our write must fail closed.
    other = sqlite3.connect(ledger_path, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    ledger._db.execute("PRAGMA busy_timeout=50")
    try:
        with pytest.raises(LedgerUnavailable):
            ledger.append([make_event(2)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert ledger.size == 1
    assert ledger.append([make_event(2)])[0].seq == 1


def test_closed_ledger_unavailable(ledger: Ledger) -> None:
    ledger.close()
    with pytest.raises(LedgerUnavailable):
        ledger.append([make_event(1)])


def test_two_writers_on_one_file_stay_consistent(ledger_path: Path, signing_key: Ed25519PrivateKey) -> None:
    """`ztcp serve` and a CLI command may append to the same ledger file: seqs must never collide."""
    from provenance.verify import verify_ledger

    a = Ledger(ledger_path, signing_key, "o", checkpoint_every=7)
    b = Ledger(ledger_path, signing_key, "o", checkpoint_every=5)
    try:
        seqs = []
        for i in range(12):
            w = a if i % 3 else b
            seqs += [r.seq for r in w.append([make_event(i * 10 + j) for j in range(i % 4 + 1)])]
        assert seqs == list(range(len(seqs)))
        cp = b.checkpoint()
        assert cp.size == len(seqs)
        # a has not seen b's last appends, yet can prove against b's checkpoint
        proof = a.inclusion_proof(len(seqs) - 1, cp.size)
        merkle.verify_inclusion(a.get(len(seqs) - 1).leaf_hash, len(seqs) - 1, cp.size, proof, cp.root)
        verify_ledger(a, full=True)
    finally:
        a.close()
        b.close()


def test_checkpoints_by_a_rotated_key_still_verify(ledger_path: Path) -> None:
    from provenance.verify import verify_ledger

    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with Ledger(ledger_path, old, "o") as led:
        led.append([make_event(1)])
        led.checkpoint()
    with Ledger(ledger_path, new, "o", trusted_keys=[old.public_key()]) as led:
        led.append([make_event(2)])
        led.checkpoint()
        assert verify_ledger(led).checkpoints == 2
    with Ledger(ledger_path, new, "o") as led, pytest.raises(Exception, match="forged"):
        verify_ledger(led)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=12), min_size=1, max_size=8))
def test_any_appended_sequence_verifies(tmp_path: Path, batches: list[list[int]]) -> None:
    """Random batches, with repeated event ids inside and across them: the ledger always verifies."""
    from provenance.verify import verify_ledger

    path = tmp_path / f"h{abs(hash(str(batches)))}.db"
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    events = {i: make_event(i) for i in range(31)}
    with Ledger(path, key, "o", checkpoint_every=5) as led:
        first_seq: dict[int, int] = {}
        for batch in batches:
            for i, r in zip(batch, led.append([events[i] for i in batch]), strict=True):
                assert r.seq == first_seq.setdefault(i, r.seq)
        assert led.size == len(first_seq)
        led.checkpoint()
        rep = verify_ledger(led, full=True)
        assert rep.events_checked == len(first_seq)
        leaves = [merkle.leaf_hash(canonical_bytes(events[i])) for i in sorted(first_seq, key=first_seq.get)]
        assert led.root() == merkle.root_from_leaf_hashes(leaves)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def test_citizen_lookup_spans_index_segments(ledger: Ledger) -> None:
    """The citizen index is partitioned every 2^18 events; a trace must see every partition."""
    from provenance.ledger import SEGMENT_BITS

    tpl = make_event(0, citizen_ref=cref(1))
    n = (1 << SEGMENT_BITS) + 5000
    marked = {7, 100_007, n - 3}
    for start in range(0, n, 20_000):
        ledger.append(
            [
                tpl.model_copy(update={"event_id": f"seg-{i}", "citizen_ref": cref(1) if i in marked else cref(2)})
                for i in range(start, min(n, start + 20_000))
            ]
        )
    found = [e.seq for e in ledger.citizen_entries(cref(1))]
    assert found == sorted(marked)
    assert found[-1] >> SEGMENT_BITS == 1
    assert [e.seq for e in ledger.citizen_entries(cref(1), after_seq=found[-2])] == [found[-1]]


def test_events_after_is_an_incremental_feed(ledger: Ledger) -> None:
    ledger.append([make_event(i) for i in range(5)])
    first, cur = ledger.events_after(None, limit=3)
    assert [e["seq"] for e in first] == [0, 1, 2] and cur == "2"
    rest, cur = ledger.events_after(cur)
    assert [e["seq"] for e in rest] == [3, 4] and cur == "4" and rest[0]["type"] == "pii.read"
    assert ledger.events_after(cur) == ([], "4")
    assert len(rest[0]["leaf_hash"]) == 64


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
                      min_size=1, max_size=12))
def test_batch_insert_stores_exact_bytes(ledger: Ledger, units: list[str]) -> None:
    """The set-based batch insert slices bodies and hashes out of concatenated blobs: every stored
    body must be byte-identical to its canonical form (multi-byte text included) and stay a BLOB."""
    start = ledger.size
    evs = [make_event(start + i, actor={"id": "emp-1", "unit": u, "agency": "BLI", "roles": ["clerk"]})
           for i, u in enumerate(units)]
    receipts = ledger.append(evs)
    db = ledger.raw_db()
    for r, e in zip(receipts, evs, strict=True):
        body, leaf, kind = db.execute("SELECT body, leaf_hash, typeof(body) FROM entries WHERE seq = ?",
                                      (r.seq,)).fetchone()
        assert kind == "blob"
        assert body == canonical_bytes(e)
        assert leaf == r.leaf_hash == merkle.leaf_hash(body)
    assert ledger.root() == merkle.root_from_leaf_hashes(
        [row[0] for row in db.execute("SELECT leaf_hash FROM entries ORDER BY seq")])


def test_wal_is_merged_in_the_background(tmp_path: Path) -> None:
    """The appender's connection never checkpoints inside COMMIT; a background connection merges the
    WAL into the main file once enough has been appended, so the WAL cannot grow without bound."""
    import time

    path = tmp_path / "wal.db"
    with Ledger(path, Ed25519PrivateKey.generate(), "test/wal", checkpoint_every=10**9) as led:
        assert led._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
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
