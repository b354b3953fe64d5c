"""The append-only provenance ledger on SQLite: RFC 9162 Merkle tree, stored nodes, signed checkpoints.

Layout (one SQLite file, WAL, ``synchronous=FULL`` so a COMMIT is fsync'd before we acknowledge):

* ``entries(seq, event_id UNIQUE, citizen_key, time_us, type, body, leaf_hash)`` — ``body`` is the
  event's RFC 8785 canonical JSON, ``leaf_hash`` = SHA-256(0x00 ‖ body), ``seq`` the 0-based leaf index.
  ``citizen_key`` is a 64-bit BLAKE2b of the citizen_ref: the citizen index is
  random-access by nature, so it is partitioned by segment (``seq >> 18``, 262,144 events): appends
  only touch the current segment's small, cache-resident subtree instead of scattering one page
  write per event across a 10 M-row index, and a trace probes each segment (one IN-list query).
  Matches are re-checked against the body. UUIDv7 event ids keep the unique index append-only;
* ``nodes(id, hash)`` — every complete subtree hash, keyed so that ids grow in creation order
  (``last leaf << 6 | level``): an append writes ~2 rows and a proof is O(log n) point reads;
* ``checkpoints(size, root, time_us, note)`` — C2SP signed notes, every N events, every T seconds
  (checked on append and by ``Recorder``'s timer) and on demand.

All writes go through ``append`` under one lock, in one transaction per batch (group commit is the
``Recorder``'s job). Readers use their own per-thread connections (WAL readers never block the writer).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.provenance_event import ProvenanceEvent, canonical_bytes, event_from_bytes
from provenance import merkle
from provenance.checkpoint import (
    Checkpoint,
    Ed25519Signer,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from provenance.errors import (
    CheckpointError,
    CheckpointUnavailable,
    LedgerUnavailable,
    ProvenanceError,
    UnknownEntry,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"  # 2: tree nodes of level >= UPPER_LEVEL are kept in their own table
# Tree nodes are stored under node_id (their last leaf, then level), so a leaf's own low-level nodes
# share its page. The few high-level nodes (1/32 of all rows) go to ``upper_nodes``: an inclusion
# proof's siblings above level 6 then come from a small, densely packed table that stays in cache
# instead of one scattered page each — what keeps a trace fast at 10 M events and beyond.
UPPER_LEVEL = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    citizen_key INTEGER,
    time_us INTEGER NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
DROP INDEX IF EXISTS entries_citizen;
CREATE INDEX IF NOT EXISTS entries_citizen_seg ON entries ((seq >> 18), citizen_key) WHERE citizen_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS upper_nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    time_us INTEGER NOT NULL,
    note TEXT NOT NULL
);
"""

_WAL_MERGE_BYTES = 16 << 20  # ask for a background WAL checkpoint after ~16 MiB of appends
_IN_CHUNK = 900  # stay under SQLite's host-parameter limit on any build
SEGMENT_BITS = 18  # citizen-index partition: 262,144 events (the literal 18 is repeated in the SQL)


def node_id(level: int, index: int) -> int:
    """Storage key of node (level, index): its last leaf, shifted, plus its level."""
    return ((((index + 1) << level) - 1) << 6) | level


def node_from_id(nid: int) -> tuple[int, int]:
    level = nid & 63
    last = nid >> 6
    return level, ((last + 1) >> level) - 1


@functools.lru_cache(maxsize=1 << 16)  # the same citizens recur across a batch and across batches
def citizen_key(ref: str) -> int:
    """Compact index key of a citizen_ref (a 64-bit hash of it, signed for SQLite)."""
    return int.from_bytes(hashlib.blake2b(ref.encode(), digest_size=8).digest(), "big", signed=True)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(t: datetime) -> int:
    return ((t if t.tzinfo else t.replace(tzinfo=UTC)) - _EPOCH) // _US  # exact, no float rounding


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


class Prepared(NamedTuple):
    """An event ready to append: its canonical bytes and leaf hash, and the indexed columns."""

    event_id: str
    citizen_key: int | None
    time_us: int
    type: str
    body: bytes
    leaf_hash: bytes


class Receipt(NamedTuple):
    """What a caller gets once its event is durable (a tuple: cheap at 100k/s)."""

    seq: int
    leaf_hash: bytes
    event_id: str
    duplicate: bool = False


def entry_document(seq: int, leaf_hash: bytes, body: bytes) -> dict:
    """A ledger entry as readers outside the ledger get it: the event as stored plus ``seq`` and
    ``leaf_hash`` (hex). One shape for ``events_after`` (the SIEM's live feed) and ``ztcp audit export
    --format jsonl``."""
    doc = orjson.loads(body)
    doc["seq"], doc["leaf_hash"] = seq, leaf_hash.hex()
    return doc


@dataclass(frozen=True)
class StoredEntry:
    seq: int
    event_id: str
    leaf_hash: bytes
    body: bytes

    @property
    def event(self) -> ProvenanceEvent:
        return event_from_bytes(self.body)

    def document(self) -> dict:
        return entry_document(self.seq, self.leaf_hash, self.body)


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str
    time: datetime

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root


class Mirror(Protocol):
    """A searchable secondary copy (e.g. Elasticsearch): fed after each durable commit."""

    def index_entries(self, entries: Sequence[StoredEntry]) -> None: ...


@dataclass
class _State:
    size: int = 0
    frontier: merkle.CompactRange = field(default_factory=merkle.CompactRange)
    last_cp_size: int = 0
    last_cp_time: float = 0.0


class Ledger:
    def __init__(
        self,
        path: str | Path,
        signing_key: Ed25519PrivateKey | Ed25519Signer,
        origin: str,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        checkpoint_in_append: bool = True,
        trusted_keys: Iterable[str | Ed25519PublicKey] = (),
        mirrors: Sequence[Mirror] = (),
        on_mirror_error: Callable[[Exception], None] | None = None,
        publish: Callable[[int, str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.origin = origin
        self.signer = NoteSigner(signing_key, _note_name(origin))
        self.verifiers = [self.signer.verifier()]
        for k in trusted_keys:  # earlier checkpoint keys (rotation): vkey strings or Ed25519 public keys
            if isinstance(k, str):
                self.verifiers.append(NoteVerifier.from_vkey(k))
            else:
                self.verifiers.append(NoteVerifier(self.signer.name, k.public_bytes(Encoding.Raw, PublicFormat.Raw)))
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        # A local key signs inside the append transaction (exactly every N events). A remote signer
        # (Vault transit) must not: a slow or unreachable key server would stall every durable
        # append, so checkpoints are then made by checkpoint()/maybe_checkpoint() outside the lock.
        self.checkpoint_in_append = checkpoint_in_append
        self.checkpoint_error: str | None = None  # the last signing failure, for /readyz and logs
        self.mirrors = list(mirrors)
        self._on_mirror_error = on_mirror_error
        # Each new signed checkpoint, after its commit (a NotePublisher copies it elsewhere). A
        # failure is logged and kept in publish_error; it never fails the append that made it.
        self.publish = publish
        self.publish_error: str | None = None
        self._mirror_queue: queue.Queue[list[StoredEntry] | None] | None = None
        self._mirror_thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        # WAL checkpoints (copying committed pages into the main file, with its own fsync) run on a
        # background connection, not inside the appender's COMMIT: the append path only writes the WAL.
        self._wal_unmerged = 0
        self._wal_kick = threading.Event()
        self._wal_stop = False
        self._wal_thread: threading.Thread | None = None
        try:
            self._db = self._connect()
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.executescript(_SCHEMA)
            self._init_meta()
            self._state = self._load_state()
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"cannot open ledger {self.path}: {exc}") from None
        if self.mirrors:
            self._mirror_queue = queue.Queue()
            self._mirror_thread = threading.Thread(target=self._mirror_loop, name="ztcp-ledger-mirror", daemon=True)
            self._mirror_thread.start()

    # -- connections -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB: keeps the citizen index hot while appending
        db.execute("PRAGMA wal_autocheckpoint=10000")  # fewer, larger WAL checkpoints on the append path
        return db

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise LedgerUnavailable("ledger is closed")
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    def _wal_loop(self) -> None:
        db = self._connect()
        try:
            while not self._wal_stop:
                self._wal_kick.wait(timeout=1.0)
                self._wal_kick.clear()
                if self._wal_unmerged:
                    self._wal_unmerged = 0
                    with contextlib.suppress(sqlite3.Error):  # busy or failing: the next round retries
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def _wal_written(self, nbytes: int) -> None:
        if self._wal_thread is None:
            self._wal_thread = threading.Thread(target=self._wal_loop, name="ztcp-ledger-wal", daemon=True)
            self._wal_thread.start()
        self._wal_unmerged += nbytes
        if self._wal_unmerged >= _WAL_MERGE_BYTES:
            self._wal_kick.set()

    def close(self) -> None:
        if self._mirror_thread is not None and self._mirror_queue is not None:
            self._mirror_queue.put(None)
            self._mirror_thread.join(timeout=30)
            self._mirror_thread = None
        if self._wal_thread is not None:
            self._wal_stop = True
            self._wal_kick.set()
            self._wal_thread.join(timeout=30)
            self._wal_thread = None
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with self._readers_lock:
                for db in self._readers:
                    db.close()
                self._readers.clear()
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_meta(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # two processes opening a new file at once: one initialises it
        try:
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not rows:
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("origin", self.origin), ("schema", SCHEMA_VERSION), ("verifier_key", self.signer.verifier_key)],
                )
            elif rows.get("origin") != self.origin:
                raise ProvenanceError(
                    f"ledger {self.path} belongs to origin {rows.get('origin')!r}, not {self.origin!r}"
                )
            elif rows.get("schema") == "1":  # move the upper tree nodes to their own table, once
                db.execute("INSERT INTO upper_nodes SELECT id, hash FROM nodes WHERE (id & 63) >= ?", (UPPER_LEVEL,))
                db.execute("DELETE FROM nodes WHERE (id & 63) >= ?", (UPPER_LEVEL,))
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _load_state(self) -> _State:
        row = self._db.execute("SELECT max(seq) FROM entries").fetchone()
        size = 0 if row[0] is None else row[0] + 1
        nodes = merkle.range_nodes(0, size)
        try:
            hashes = self._node_hashes(self._db, nodes) if nodes else {}
            frontier = merkle.CompactRange(size, [hashes[n] for n in nodes])
            self.damaged: str | None = None
        except UnknownEntry as exc:
            # Still open it, so `verify` can say what happened; appends refuse until it is repaired.
            frontier = merkle.CompactRange()
            self.damaged = str(exc)
        st = _State(size=size, frontier=frontier)
        cp = self._db.execute("SELECT size, time_us FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        if cp:
            st.last_cp_size, st.last_cp_time = cp[0], cp[1] / 1e6
        else:
            st.last_cp_time = time.time()
        return st

    # -- writing -----------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._state.size

    def prepare(self, events: Sequence[ProvenanceEvent]) -> list[Prepared]:
        """Canonical bytes and leaf hashes, computed outside the write lock (callers' threads)."""
        sha = hashlib.sha256
        make = tuple.__new__  # NamedTuple's own __new__ is a Python function: too slow at 100k/s
        ckey = citizen_key
        out = []
        for ev in events:
            body = canonical_bytes(ev)
            ref = ev.citizen_ref
            t = ev.time
            out.append(
                make(
                    Prepared,
                    (
                        ev.event_id,
                        ckey(ref) if ref else None,
                        (t - _EPOCH) // _US,
                        ev.type,
                        body,
                        sha(b"\x00" + body).digest(),
                    ),
                )
            )
        return out

    def append(self, events: Sequence[ProvenanceEvent]) -> list[Receipt]:
        """Durably append a batch in one fsync'd transaction; idempotent by ``event_id``."""
        return self.append_prepared(self.prepare(events)) if events else []

    def append_prepared(self, items: Sequence[Prepared]) -> list[Receipt]:
        if not items:
            return []
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("ledger is closed")
            if self.damaged:
                raise LedgerUnavailable(f"ledger is damaged ({self.damaged}); run `ztcp audit verify`")
            try:
                return self._append_locked(items)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._state = self._reload_state_or_none() or self._state
                raise LedgerUnavailable(f"ledger write failed: {exc}") from None
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _reload_state_or_none(self) -> _State | None:
        try:
            return self._load_state()
        except sqlite3.Error:
            return None

    def _lookup(self, ids: Sequence[str]) -> dict[str, Receipt]:
        existing: dict[str, Receipt] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            q = f"SELECT event_id, seq, leaf_hash FROM entries WHERE event_id IN ({','.join('?' * len(chunk))})"  # noqa: S608
            for eid, seq, lh in self._db.execute(q, chunk):
                existing[eid] = Receipt(seq, lh, eid, duplicate=True)
        return existing

    def _begin(self) -> None:
        """Take SQLite's write lock, then catch up if another process (or Ledger) appended meanwhile.

        ``ztcp serve`` and a CLI command (``audit trace`` records its query) may append to the same
        file; the tree state cached here must be the file's, or seqs would collide.
        """
        self._db.execute("BEGIN IMMEDIATE")
        row = self._db.execute("SELECT max(seq) FROM entries").fetchone()
        if (0 if row[0] is None else row[0] + 1) != self._state.size:
            self._state = self._load_state()
            if self.damaged:
                self._db.execute("ROLLBACK")
                raise LedgerUnavailable(f"ledger is damaged ({self.damaged}); run `ztcp audit verify`")

    def refresh(self) -> None:
        """Pick up appends made through another connection (cheap when nothing changed)."""
        with self._lock:
            row = self._reader().execute("SELECT max(seq) FROM entries").fetchone()
            if (0 if row[0] is None else row[0] + 1) != self._state.size:
                self._state = self._load_state()

    def _append_locked(self, items: Sequence[Prepared]) -> list[Receipt]:
        # Fast path: assume no event id was seen before and let the UNIQUE index say otherwise;
        # retries are rare, so the per-id lookup runs only when a duplicate is actually present.
        self._begin()
        try:
            return self._write(items, {})
        except sqlite3.IntegrityError:
            self._db.execute("ROLLBACK")
        self._begin()
        return self._write(items, self._lookup([p.event_id for p in items]))

    def _write(self, items: Sequence[Prepared], existing: dict[str, Receipt]) -> list[Receipt]:
        db = self._db
        st = self._state
        seq = st.size
        receipts: list[Receipt] = []
        new: list[Prepared] = []
        node_ids: list[int] = []
        node_hashes: list[bytes] = []
        upper_ids: list[int] = []
        upper_hashes: list[bytes] = []
        seen: dict[str, int] = {}
        make = tuple.__new__
        sha = hashlib.sha256
        # The compact range, inlined (this loop runs 100k times a second): the nodes a new leaf
        # closes all end at that leaf, so their storage id is simply (seq << 6) | level.
        stack = list(st.frontier._stack)
        for p in items:
            eid = p.event_id
            if existing or eid in seen:
                prior = existing.get(eid)
                if prior is None and eid in seen:
                    r = receipts[seen[eid]]
                    prior = Receipt(r.seq, r.leaf_hash, eid, True)
                if prior is not None:
                    receipts.append(prior)
                    continue
            h = lh = p.leaf_hash
            base = seq << 6
            node_ids.append(base)
            node_hashes.append(lh)
            level = 0
            while stack and stack[-1][0] == level:
                h = sha(b"\x01" + stack.pop()[1] + h).digest()
                level += 1
                if level < UPPER_LEVEL:
                    node_ids.append(base | level)
                    node_hashes.append(h)
                else:
                    upper_ids.append(base | level)
                    upper_hashes.append(h)
            stack.append((level, h))
            new.append(p)
            seen[eid] = len(receipts)
            receipts.append(make(Receipt, (seq, lh, eid, False)))
            seq += 1
        frontier = merkle.CompactRange(seq, [x[1] for x in stack])
        if not new:
            self._db.execute("ROLLBACK")
            return receipts
        now = time.time()
        cp_row = None
        if self.checkpoint_in_append and (
            seq - st.last_cp_size >= self.checkpoint_every or (now - st.last_cp_time) >= self.checkpoint_interval
        ):
            # On failure the events are still durable; the next checkpoint covers them (error kept).
            with contextlib.suppress(CheckpointUnavailable):
                cp_row = self._checkpoint_row(seq, frontier.root(), now)
        _insert_batch(db, st.size, new, (node_ids, node_hashes), (upper_ids, upper_hashes))
        if cp_row:
            db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", cp_row)
        db.execute("COMMIT")
        self._wal_written(sum(len(p.body) for p in new) + 96 * len(new))
        first = st.size
        st.size, st.frontier = seq, frontier
        if cp_row:
            st.last_cp_size, st.last_cp_time = seq, now
            self._publish(cp_row)
        if self._mirror_queue is not None:
            self._mirror_queue.put([StoredEntry(first + i, p.event_id, p.leaf_hash, p.body) for i, p in enumerate(new)])
        return receipts

    def _mirror_loop(self) -> None:
        """Feed mirrors off the append path: a slow or down Elasticsearch never delays a commit.

        After a failure a mirror that can ``sync`` (EsMirror) resumes from its own highest seq, so
        batches dropped during the outage are indexed once it is back.
        """
        assert self._mirror_queue is not None
        behind = set()
        while True:
            entries = self._mirror_queue.get()
            if entries is None:
                self._mirror_queue.task_done()
                return
            self._feed(entries, behind)
            self._mirror_queue.task_done()

    def _feed(self, entries: list[StoredEntry], behind: set[int]) -> None:
        for i, m in enumerate(self.mirrors):
            try:
                if i in behind and hasattr(m, "sync"):
                    m.sync(self)
                    behind.discard(i)
                else:
                    m.index_entries(entries)
            except Exception as exc:  # noqa: BLE001 - the SQLite ledger is the record of truth
                behind.add(i)
                if self._on_mirror_error:
                    self._on_mirror_error(exc)

    def flush_mirrors(self, timeout: float = 30.0) -> None:
        """Wait until every committed batch has been handed to the mirrors (tests, shutdown)."""
        if self._mirror_queue is not None:
            deadline = time.monotonic() + timeout
            while self._mirror_queue.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.01)

    def _checkpoint_row(self, size: int, root: bytes, now: float) -> tuple[int, bytes, int, str]:
        try:
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        except CheckpointError:
            raise
        except Exception as exc:  # the signer is pluggable (a key server): any failure means "not now"
            self.checkpoint_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("checkpoint at size %d not signed: %s", size, self.checkpoint_error)
            raise CheckpointUnavailable(f"cannot sign a checkpoint: {self.checkpoint_error}") from None
        self.checkpoint_error = None
        return (size, root, int(now * 1_000_000), note)

    def checkpoint(self) -> SignedCheckpoint:
        """Sign the current tree now (returns the existing checkpoint if the size has not moved).

        The signature is made outside the ledger lock, so appends go on while a remote key signs;
        a checkpoint of a size that has meanwhile grown is still a valid (older) checkpoint.
        Raises :class:`CheckpointUnavailable` when the key cannot sign.
        """
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("ledger is closed")
            try:
                self._begin()
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise LedgerUnavailable(f"cannot read the tree to checkpoint: {exc}") from None
            st = self._state
            size, root = st.size, st.frontier.root()
            fresh = st.last_cp_size == size
        if size == 0:
            raise UnknownEntry("the ledger is empty: nothing to checkpoint")
        if not fresh:
            now = time.time()
            row = self._checkpoint_row(size, root, now)
            with self._lock:
                try:
                    self._db.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?)", row)
                except sqlite3.Error as exc:
                    raise LedgerUnavailable(f"cannot store checkpoint: {exc}") from None
                st = self._state
                if size > st.last_cp_size:
                    st.last_cp_size, st.last_cp_time = size, now
            self._publish(row)
        cp = self.latest_checkpoint()
        assert cp is not None
        return cp

    def _publish(self, row: tuple[int, bytes, int, str]) -> None:
        if self.publish is None:
            return
        try:
            self.publish(row[0], row[3])
            self.publish_error = None
        except Exception as exc:  # noqa: BLE001 - the checkpoint stands; publishing is retried next time
            self.publish_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.error("checkpoint at size %d not published: %s", row[0], self.publish_error)

    def checkpoint_or_latest(self) -> SignedCheckpoint | None:
        """A fresh checkpoint if the key can sign now, else the latest stored one (readers degrade:
        events after it show as not yet signed instead of the whole trace failing)."""
        try:
            return self.checkpoint()
        except CheckpointUnavailable:
            return self.latest_checkpoint()

    def maybe_checkpoint(self) -> SignedCheckpoint | None:
        """Checkpoint if events are waiting and N events or the interval have passed (a timer calls this)."""
        st = self._state
        waiting = st.size - st.last_cp_size
        due = waiting >= self.checkpoint_every or time.time() - st.last_cp_time >= self.checkpoint_interval
        if waiting > 0 and due:
            return self.checkpoint()
        return None

    # -- reading -----------------------------------------------------------------------------------

    def _node_hashes(self, db: sqlite3.Connection, nodes: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        want = {node_id(lv, ix): (lv, ix) for lv, ix in nodes}
        out: dict[tuple[int, int], bytes] = {}
        for table, ids in (("nodes", [n for n in want if n & 63 < UPPER_LEVEL]),
                           ("upper_nodes", [n for n in want if n & 63 >= UPPER_LEVEL])):
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                q = f"SELECT id, hash FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"  # noqa: S608
                for nid, h in db.execute(q, chunk):
                    out[want[nid]] = h
        if len(out) != len(want):
            missing = sorted(set(want.values()) - set(out))
            lv, ix = missing[0]
            raise UnknownEntry(f"tree node for seq {ix << lv} (level {lv}) is missing from the ledger")
        return out

    def _materialise(self, plans: list[list[list[tuple[int, int]]]]) -> list[list[bytes]]:
        needed = {n for plan in plans for rng in plan for n in rng}
        hashes = self._node_hashes(self._reader(), needed) if needed else {}
        return [[merkle.fold_range([hashes[n] for n in rng]) for rng in plan] for plan in plans]

    def _check_size(self, size: int | None) -> int:
        cur = self._state.size
        if size is not None and size > cur:
            self.refresh()  # e.g. a checkpoint signed by another process over events we have not seen
            cur = self._state.size
        if size is None:
            return cur
        if not 0 <= size <= cur:
            raise UnknownEntry(f"tree size {size} is beyond the ledger's size {cur}")
        return size

    def root(self, size: int | None = None) -> bytes:
        size = self._check_size(size)
        if size == 0:
            return merkle.EMPTY_ROOT
        return self._materialise([[merkle.range_nodes(0, size)]])[0][0]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.inclusion_proofs([index], size)[0]

    def inclusion_proofs(self, indices: Sequence[int], size: int | None = None) -> list[list[bytes]]:
        """Proofs for several leaves against one tree size, with one batched node read."""
        size = self._check_size(size)
        plans = []
        for index in indices:
            if not 0 <= index < size:
                raise UnknownEntry(f"seq {index} is not in a tree of size {size}")
            plans.append(merkle.inclusion_plan(index, size))
        return self._materialise(plans)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise UnknownEntry(f"size {size1} is not within 0..{size2}")
        return self._materialise([merkle.consistency_plan(size1, size2)])[0]

    def get(self, seq: int) -> StoredEntry:
        row = (
            self._reader()
            .execute("SELECT seq, event_id, leaf_hash, body FROM entries WHERE seq = ?", (seq,))
            .fetchone()
        )
        if row is None:
            raise UnknownEntry(f"no event with seq {seq}")
        return StoredEntry(*row)

    def get_by_event_ids(self, event_ids: Sequence[str]) -> dict[str, StoredEntry]:
        out: dict[str, StoredEntry] = {}
        ids = list(dict.fromkeys(event_ids))
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            q = f"SELECT seq, event_id, leaf_hash, body FROM entries WHERE event_id IN ({','.join('?' * len(chunk))})"  # noqa: S608
            for row in self._reader().execute(q, chunk):
                out[row[1]] = StoredEntry(*row)
        return out

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[StoredEntry]:
        end = self.size if end is None else end
        cur = self._reader().execute(
            "SELECT seq, event_id, leaf_hash, body FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
        )
        for row in cur:
            yield StoredEntry(*row)

    def events_after(self, cursor: str | int | None, limit: int = 50_000) -> tuple[list[dict], str | None]:
        """Events with seq > cursor as dicts (plus ``seq``, ``leaf_hash``), and the new cursor.

        Shaped for ``siem_rules.CallableSource(name, "provenance", ledger.events_after)``: incremental
        detection reads only what was appended since its last run, whatever the ledger's size.
        """
        after = -1 if cursor in (None, "") else int(cursor)
        rows = (
            self._reader()
            .execute("SELECT seq, leaf_hash, body FROM entries WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
            .fetchall()
        )
        out = [entry_document(seq, lh, body) for seq, lh, body in rows]
        return out, (str(rows[-1][0]) if rows else (None if cursor is None else str(cursor)))

    def citizen_entries(
        self,
        citizen_ref: str,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
        after_seq: int = -1,
    ) -> list[StoredEntry]:
        lo = _us(since) if since else -(2**62)
        hi = _us(until) if until else 2**62
        db = self._reader()
        top = db.execute("SELECT max(seq) FROM entries").fetchone()[0]
        if top is None:
            return []
        segments = list(range((max(after_seq, 0) >> SEGMENT_BITS), (top >> SEGMENT_BITS) + 1))
        needle = b'"citizen_ref":"' + citizen_ref.encode() + b'"'
        key = citizen_key(citizen_ref)
        out = []
        for i in range(0, len(segments), _IN_CHUNK):
            chunk = segments[i : i + _IN_CHUNK]
            q = (
                "SELECT seq, event_id, leaf_hash, body FROM entries WHERE (seq >> 18) IN "  # noqa: S608
                f"({','.join('?' * len(chunk))}) AND citizen_key = ? AND citizen_key IS NOT NULL "
                "AND time_us >= ? AND time_us < ? AND seq > ? ORDER BY seq"
            )
            for row in db.execute(q, (*chunk, key, lo, hi, after_seq)):
                if needle in row[3]:  # the 64-bit key could collide; the body is authoritative
                    out.append(StoredEntry(*row))
                    if limit is not None and len(out) >= limit:
                        return out
        return out

    # -- checkpoints -------------------------------------------------------------------------------

    def _open(self, note: str, time_us: int) -> SignedCheckpoint:
        return SignedCheckpoint(open_checkpoint(note, self.verifiers, self.origin), note, _from_us(time_us))

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The newest checkpoint, signature verified (raises ``CheckpointError`` if forged)."""
        row = self._reader().execute("SELECT note, time_us FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return self._open(*row) if row else None

    def checkpoint_at(self, size: int) -> SignedCheckpoint:
        row = self._reader().execute("SELECT note, time_us FROM checkpoints WHERE size = ?", (size,)).fetchone()
        if row is None:
            raise UnknownEntry(f"no checkpoint at size {size}")
        return self._open(*row)

    def raw_checkpoints(self) -> Iterator[tuple[int, bytes, int, str]]:
        """(size, root, time_us, note) rows in size order, unverified: for ``verify``."""
        yield from self._reader().execute("SELECT size, root, time_us, note FROM checkpoints ORDER BY size")

    def raw_db(self) -> sqlite3.Connection:
        """This thread's read connection (for the verifier and the Elasticsearch sync)."""
        return self._reader()


# A whole batch is inserted by two statements over three bound parameters (a JSON array of the
# small columns, the concatenated bodies and the concatenated hashes): SQLite then does every row
# in one step with the GIL released, instead of one GIL round-trip per row with executemany — which
# starves the writer whenever producer threads are busy serialising the next events.
_INSERT_ENTRIES = (
    "INSERT INTO entries (seq, event_id, citizen_key, time_us, type, body, leaf_hash) "
    "SELECT ?4 + key, value ->> 0, value ->> 1, value ->> 2, value ->> 3, "
    "substr(?2, value ->> 4, value ->> 5), substr(?3, key * 32 + 1, 32) FROM json_each(?1)"
)
_INSERT_NODES = "INSERT INTO {} (id, hash) SELECT value, substr(?2, key * 32 + 1, 32) FROM json_each(?1)"
_NodeRows = tuple[list[int], list[bytes]]


def _insert_batch(db: sqlite3.Connection, first_seq: int, items: Sequence[Prepared],
                  lower: _NodeRows, upper: _NodeRows) -> None:
    meta = []
    offset = 1  # substr() counts from 1
    for p in items:
        n = len(p.body)
        meta.append((p.event_id, p.citizen_key, p.time_us, p.type, offset, n))
        offset += n
    db.execute(_INSERT_ENTRIES, (orjson.dumps(meta), b"".join(p.body for p in items),
                                 b"".join(p.leaf_hash for p in items), first_seq))
    for table, (ids, hashes) in (("nodes", lower), ("upper_nodes", upper)):
        if ids:
            db.execute(_INSERT_NODES.format(table), (orjson.dumps(ids), b"".join(hashes)))



def _note_name(origin: str) -> str:
    """A note key name from the origin (names may not contain spaces or '+')."""
    name = "".join("-" if c.isspace() or c == "+" else c for c in origin)
    if not name:
        raise CheckpointError("ledger origin must not be empty")
    return name
