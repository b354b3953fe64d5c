"""Tamper evidence: any single change, deletion, insertion or reorder in the stored ledger is found and located."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provenance_testkit import make_event

from contracts.provenance_event import canonical_bytes
from provenance import IntegrityError, Ledger, merkle
from provenance.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from provenance.sqlite_store import UPPER_LEVEL
from provenance.store import node_from_id, node_id
from provenance.verify import verify_ledger

ORIGIN = "ztcp.test/provenance"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
N = 40


def _build(path: Path, n: int = N, every: int = 16) -> None:
    with Ledger(path, KEY, ORIGIN, checkpoint_every=every) as led:
        for i in range(0, n, 7):
            led.append([make_event(j) for j in range(i, min(n, i + 7))])
        led.checkpoint()


def _verify(path: Path, full: bool = False) -> None:
    with Ledger(path, KEY, ORIGIN) as led:
        verify_ledger(led, full=full)


def _shift(db: sqlite3.Connection, start: int, delta: int) -> None:
    db.execute("UPDATE entries SET seq = -(seq + ?) - 1 WHERE seq >= ?", (delta, start))
    db.execute("UPDATE entries SET seq = -seq - 1 WHERE seq < 0")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("pristine") / "l.db"
    _build(p)
    db = sqlite3.connect(p)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return p


def _copy(pristine: Path, tmp_path: Path) -> Path:
    p = tmp_path / "copy.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(p) + suffix).unlink(missing_ok=True)
    p.write_bytes(pristine.read_bytes())
    return p


def test_intact_ledger_verifies(pristine: Path, tmp_path: Path) -> None:
    p = _copy(pristine, tmp_path)
    with Ledger(p, KEY, ORIGIN) as led:
        rep = verify_ledger(led, full=True)
    assert rep.size == N and rep.events_checked == N and rep.latest_checkpoint_size == N and rep.checkpoints >= 2


_settings = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(seq=st.integers(0, N - 1), pos=st.integers(0, 10_000), bit=st.integers(1, 255))
def test_any_byte_change_in_an_event_is_located(pristine: Path, tmp_path: Path, seq: int, pos: int, bit: int) -> None:
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    body = bytearray(db.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0])
    body[pos % len(body)] ^= bit
    db.execute("UPDATE entries SET body = ? WHERE seq = ?", (bytes(body), seq))
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq == seq and exc.value.kind == "changed"
    assert f"seq {seq}" in str(exc.value)


@_settings
@given(
    seq=st.integers(0, N - 1),
    pos=st.integers(0, 31),
    bit=st.integers(1, 255),
    column=st.sampled_from(["entry", "node"]),
)
def test_any_byte_change_in_stored_hashes_is_located(
    pristine: Path, tmp_path: Path, seq: int, pos: int, bit: int, column: str
) -> None:
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    if column == "entry":
        h = bytearray(db.execute("SELECT leaf_hash FROM entries WHERE seq = ?", (seq,)).fetchone()[0])
        h[pos] ^= bit
        db.execute("UPDATE entries SET leaf_hash = ? WHERE seq = ?", (bytes(h), seq))
    else:
        h = bytearray(db.execute("SELECT hash FROM nodes WHERE id = ?", (node_id(0, seq),)).fetchone()[0])
        h[pos] ^= bit
        db.execute("UPDATE nodes SET hash = ? WHERE id = ?", (bytes(h), node_id(0, seq)))
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq == seq


@_settings
@given(seq=st.integers(0, N - 1), renumber=st.booleans())
def test_deletion_is_located(pristine: Path, tmp_path: Path, seq: int, renumber: bool) -> None:
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    db.execute("DELETE FROM entries WHERE seq = ?", (seq,))
    if renumber:
        _shift(db, seq + 1, -1)
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq == seq and exc.value.kind == "missing"


@_settings
@given(seq=st.integers(0, N))
def test_insertion_is_located(pristine: Path, tmp_path: Path, seq: int) -> None:
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    forged = make_event(999, record_id="forged")
    body = canonical_bytes(forged)
    _shift(db, seq, 1)
    db.execute(
        "INSERT INTO entries VALUES (?, ?, NULL, 0, 'pii.read', ?, ?)",
        (seq, forged.event_id, body, merkle.leaf_hash(body)),
    )
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq == seq
    assert exc.value.kind == "inserted"


@_settings
@given(a=st.integers(0, N - 1), b=st.integers(0, N - 1))
def test_reorder_is_located(pristine: Path, tmp_path: Path, a: int, b: int) -> None:
    if a == b:
        return
    a, b = min(a, b), max(a, b)
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    db.execute("UPDATE entries SET seq = -1 WHERE seq = ?", (a,))
    db.execute("UPDATE entries SET seq = ? WHERE seq = ?", (a, b))
    db.execute("UPDATE entries SET seq = ? WHERE seq = -1", (b,))
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq == a and exc.value.kind == "reordered"
    assert f"{a} and {b}" in str(exc.value)


def test_a_row_planted_outside_the_sequence_is_found(pristine: Path, tmp_path: Path) -> None:
    """A row below seq 0 is in no tree and no reader's range, yet its event id would make a real
    event with that id look like a duplicate: verify must see every stored row, not just 0..size."""
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    planted = make_event(777, record_id="planted")
    body = canonical_bytes(planted)
    db.execute("INSERT INTO entries VALUES (-1, ?, NULL, 0, 'pii.read', ?, ?)",
               (planted.event_id, body, merkle.leaf_hash(body)))
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq == -1 and exc.value.kind == "inserted"


def test_forged_checkpoint_detected(pristine: Path, tmp_path: Path) -> None:
    p = _copy(pristine, tmp_path)
    forger = NoteSigner(Ed25519PrivateKey.generate(), ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, 30, bytes(32)), forger)
    db = sqlite3.connect(p, isolation_level=None)
    db.execute("INSERT OR REPLACE INTO checkpoints VALUES (30, ?, 0, ?)", (bytes(32), note))
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.kind == "forged-checkpoint" and exc.value.seq == 30


def test_altered_checkpoint_note_detected(pristine: Path, tmp_path: Path) -> None:
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    size, note = db.execute("SELECT size, note FROM checkpoints ORDER BY size LIMIT 1").fetchone()
    db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note.replace(f"\n{size}\n", f"\n{size - 1}\n"), size))
    db.close()
    with pytest.raises(IntegrityError, match="forged or altered"):
        _verify(p)


def test_consistent_rewrite_caught_by_signed_root(pristine: Path, tmp_path: Path) -> None:
    """An attacker who rewrites an event AND recomputes every stored hash still cannot re-sign."""
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    rows = db.execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
    forged = bytes(rows[5][1]).replace(b"rec-5", b"rec-X")
    rows[5] = (5, forged)
    cr = merkle.CompactRange()
    db.execute("DELETE FROM nodes")
    db.execute("DELETE FROM upper_nodes")
    for seq, body in rows:
        lh = merkle.leaf_hash(body)
        db.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?", (body, lh, seq))
        for level, index, h in cr.append(lh):
            table = "nodes" if level < UPPER_LEVEL else "upper_nodes"
            db.execute(f"INSERT INTO {table} VALUES (?, ?)", (node_id(level, index), h))  # noqa: S608
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq is not None and exc.value.seq <= 5  # located to the signed interval holding seq 5


def test_raw_file_byte_flip_detected(pristine: Path, tmp_path: Path) -> None:
    p = _copy(pristine, tmp_path)
    raw = bytearray(p.read_bytes())
    at = raw.find(b"rec-17")
    assert at > 0
    raw[at + 4] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    assert exc.value.seq == 17


def test_deep_check_catches_non_canonical_body(pristine: Path, tmp_path: Path) -> None:
    p = _copy(pristine, tmp_path)
    db = sqlite3.connect(p, isolation_level=None)
    body = db.execute("SELECT body FROM entries WHERE seq = 3").fetchone()[0]
    spaced = bytes(body).replace(b'","', b'", "', 1)
    db.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 3", (spaced, merkle.leaf_hash(spaced)))
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p, full=True)
    assert exc.value.seq == 3


def test_upper_tree_nodes_are_stored_apart_and_checked(tmp_path: Path) -> None:
    p = tmp_path / "big.db"
    _build(p, n=300, every=100)
    db = sqlite3.connect(p, isolation_level=None)
    assert db.execute("SELECT count(*) FROM upper_nodes").fetchone()[0] > 0
    assert db.execute("SELECT count(*) FROM nodes WHERE (id & 63) >= ?", (UPPER_LEVEL,)).fetchone()[0] == 0
    nid = db.execute("SELECT id FROM upper_nodes ORDER BY id LIMIT 1 OFFSET 2").fetchone()[0]
    db.execute("UPDATE upper_nodes SET hash = ? WHERE id = ?", (bytes(32), nid))
    db.close()
    with pytest.raises(IntegrityError) as exc:
        _verify(p)
    level, index = node_from_id(nid)
    assert exc.value.kind == "tree" and exc.value.seq == index << level


def test_a_schema_1_ledger_is_migrated_when_opened(tmp_path: Path) -> None:
    """Ledgers written before the upper-node table (every node in ``nodes``) keep verifying and proving."""
    p = tmp_path / "old.db"
    _build(p, n=300, every=100)
    db = sqlite3.connect(p, isolation_level=None)
    db.execute("INSERT INTO nodes SELECT id, hash FROM upper_nodes")
    db.execute("DELETE FROM upper_nodes")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.close()
    with Ledger(p, KEY, ORIGIN) as led:
        verify_ledger(led)
        cp = led.checkpoint()
        leaf = merkle.leaf_hash(led.get(123).body)
        merkle.verify_inclusion(leaf, 123, cp.size, led.inclusion_proof(123, cp.size), cp.root)
        led.append([make_event(300)])
        verify_ledger(led)
    db = sqlite3.connect(p)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
    assert db.execute("SELECT count(*) FROM nodes WHERE (id & 63) >= ?", (UPPER_LEVEL,)).fetchone()[0] == 0
    db.close()
