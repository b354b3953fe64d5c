"""The SQLite driver of the ledger store: one file, WAL, ``synchronous=FULL`` (a COMMIT is fsync'd).

Layout, schema version 2 (``meta`` records ``schema``, ``origin`` and the first ``verifier_key``; a
file without a ``schema`` row is version 1):

* ``entries(seq, event_id UNIQUE, citizen_key, time_us, type, body, leaf_hash)`` — ``body`` is the
  event's RFC 8785 canonical JSON, ``leaf_hash`` = SHA-256(0x00 ‖ body), ``seq`` the 0-based leaf
  index. The citizen index is random-access by nature, so it is partitioned by segment
  (``seq >> 18``, 262,144 events): appends only touch the current segment's small, cache-resident
  subtree instead of scattering one page write per event across a 10 M-row index, and a lookup
  probes each segment (one IN-list query). UUIDv7 event ids keep the unique index append-only;
* ``nodes(id, hash)`` — tree nodes of the bottom six levels, keyed by ``store.node_id``;
* ``upper_nodes(id, hash)`` — the levels above (1/32 of the rows): a proof's upper siblings then
  come from a small, densely packed table that stays in cache instead of one scattered page each
  (what keeps a trace fast at 10 M events). Version 1 kept them in ``nodes``; ``open`` moves them;
* ``checkpoints(size, root, time_us, note)`` — the signed notes.

One writer connection, used under a lock, does every write; readers get one connection per thread
(WAL readers never block the writer). Several processes may append to one file: ``BEGIN IMMEDIATE``
is the sequencer's lock, and the size is read under it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import orjson

from provenance.errors import LedgerUnavailable, ProvenanceError, SchemaVersionError
from provenance.store import (
    LOWER_LEVELS,
    Appended,
    CheckpointRow,
    Integrate,
    NodeRows,
    Prepared,
    Receipt,
    StoredEntry,
    assign_seqs,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: tree nodes of level >= UPPER_LEVEL are kept in their own table
UPPER_LEVEL = LOWER_LEVELS  # the first level stored in upper_nodes
SEGMENT_BITS = 18  # citizen-index partition: 262,144 events (the literal 18 is repeated in the SQL)

# Statement by statement, not one script: sqlite3's executescript() commits first, and the schema
# must be created (or upgraded) inside the transaction that checks the file's version and origin.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    citizen_key INTEGER,
    time_us INTEGER NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
)""",
    "DROP INDEX IF EXISTS entries_citizen",  # the unpartitioned index of early files
    "CREATE INDEX IF NOT EXISTS entries_citizen_seg ON entries ((seq >> 18), citizen_key) "
    "WHERE citizen_key IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS upper_nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    time_us INTEGER NOT NULL,
    note TEXT NOT NULL
)""",
)

_WAL_MERGE_BYTES = 16 << 20  # ask for a background WAL checkpoint after ~16 MiB of appends
_IN_CHUNK = 900  # stay under SQLite's host-parameter limit on any build
_ENTRY_COLUMNS = "seq, event_id, leaf_hash, body"

# A whole batch is inserted by a few statements over three bound parameters (a JSON array of the
# small columns, the concatenated bodies and the concatenated hashes): SQLite then does every row
# in one step with the GIL released, instead of one GIL round-trip per row with executemany — which
# starves the writer whenever producer threads are busy serialising the next events.
_INSERT_ENTRIES = (
    "INSERT INTO entries (seq, event_id, citizen_key, time_us, type, body, leaf_hash) "
    "SELECT ?4 + key, value ->> 0, value ->> 1, value ->> 2, value ->> 3, "
    "substr(?2, value ->> 4, value ->> 5), substr(?3, key * 32 + 1, 32) FROM json_each(?1)"
)
_INSERT_NODES = "INSERT INTO {} (id, hash) SELECT value, substr(?2, key * 32 + 1, 32) FROM json_each(?1)"


def _insert_batch(db: sqlite3.Connection, first_seq: int, items: Sequence[Prepared],
                  lower: NodeRows, upper: NodeRows) -> int:
    """Insert entries and their nodes; returns the bytes of bodies written (for WAL accounting)."""
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
    return offset - 1


def _size(db: sqlite3.Connection) -> int:
    top = db.execute("SELECT max(seq) FROM entries").fetchone()[0]
    return 0 if top is None else top + 1


def _node_hashes(db: sqlite3.Connection, ids: Collection[int]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for table, part in (("nodes", [n for n in ids if n & 63 < UPPER_LEVEL]),
                        ("upper_nodes", [n for n in ids if n & 63 >= UPPER_LEVEL])):
        for i in range(0, len(part), _IN_CHUNK):
            chunk = part[i : i + _IN_CHUNK]
            q = f"SELECT id, hash FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"  # noqa: S608
            out.update(db.execute(q, chunk))
    return out


def _latest_checkpoint(db: sqlite3.Connection) -> CheckpointRow | None:
    row = db.execute("SELECT size, root, time_us, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return CheckpointRow(*row) if row else None


class _View:
    """The writer's connection inside its transaction, as the integrator may read it."""

    __slots__ = ("_db", "size")

    def __init__(self, db: sqlite3.Connection, size: int) -> None:
        self._db = db
        self.size = size

    def node_hashes(self, ids: Collection[int]) -> dict[int, bytes]:
        return _node_hashes(self._db, ids)

    def latest_checkpoint(self) -> CheckpointRow | None:
        return _latest_checkpoint(self._db)


class SqliteLedgerStore:
    """A :class:`provenance.store.LedgerStore` in one SQLite file.

    ``timeout`` is how long a write waits for another process's write lock before failing (closed)
    with ``LedgerUnavailable``. Creating the object touches nothing; ``open`` creates or upgrades
    the schema, and ``backup_to`` works without it.
    """

    SCHEMA_VERSION = SCHEMA_VERSION
    read_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.timeout = timeout
        self._db: sqlite3.Connection | None = None  # the writer, opened by open()
        self._lock = threading.Lock()  # one transaction at a time on the writer connection
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

    def __repr__(self) -> str:
        return f"SqliteLedgerStore({self.location!r})"

    # -- connections -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.timeout)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # durable before acknowledge: COMMIT fsyncs the WAL
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB: keeps the citizen index hot while appending
        db.execute("PRAGMA wal_autocheckpoint=10000")  # fewer, larger WAL checkpoints (non-writer connections)
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

    def _writer(self) -> sqlite3.Connection:
        if self._closed:
            raise LedgerUnavailable("ledger is closed")
        if self._db is None:
            raise LedgerUnavailable(f"ledger store {self.location} is not open")
        return self._db

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

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self, origin: str, verifier_key: str) -> None:
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("ledger is closed")
            try:
                if self._db is None:
                    self._db = self._connect()
                    # The writer never checkpoints inside COMMIT; the background thread merges the WAL.
                    self._db.execute("PRAGMA wal_autocheckpoint=0")
                self._init(self._db, origin, verifier_key)
            except sqlite3.Error as exc:
                raise LedgerUnavailable(f"cannot open ledger {self.path}: {exc}") from None

    def _init(self, db: sqlite3.Connection, origin: str, verifier_key: str) -> None:
        db.execute("BEGIN IMMEDIATE")  # two processes opening a new file at once: one initialises it
        try:
            has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall()) if has_meta else {}
            version = self._version_of(rows) if rows else None
            if version is not None and version > SCHEMA_VERSION:
                # Checked before any statement of ours runs: they could damage a layout we do not know.
                raise SchemaVersionError(
                    f"ledger {self.path} has schema version {version}, newer than this ztcp understands "
                    f"(up to {SCHEMA_VERSION}): upgrade ztcp to open it"
                )
            if rows and rows.get("origin") != origin:
                raise ProvenanceError(f"ledger {self.path} belongs to origin {rows.get('origin')!r}, not {origin!r}")
            for stmt in _SCHEMA:
                db.execute(stmt)
            if not rows:
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("origin", origin), ("schema", str(SCHEMA_VERSION)), ("verifier_key", verifier_key)],
                )
            elif version == 1:  # move the upper tree nodes to their own table, once
                db.execute("INSERT INTO upper_nodes SELECT id, hash FROM nodes WHERE (id & 63) >= ?", (UPPER_LEVEL,))
                db.execute("DELETE FROM nodes WHERE (id & 63) >= ?", (UPPER_LEVEL,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                log.info("ledger %s upgraded from schema version 1 to %d (upper tree nodes in their own table)",
                         self.path, SCHEMA_VERSION)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _version_of(self, meta: dict[str, str]) -> int:
        raw = meta.get("schema", "1")  # files from before the version row are version 1
        try:
            version = int(raw)
        except ValueError:
            version = 0
        if version < 1:
            raise SchemaVersionError(f"ledger {self.path} records schema version {raw!r}, which no ztcp writes")
        return version

    def schema_version(self) -> int:
        row = self._reader().execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return self._version_of({"schema": row[0]} if row else {})

    def close(self) -> None:
        if self._wal_thread is not None:
            self._wal_stop = True
            self._wal_kick.set()
            self._wal_thread.join(timeout=30)
            self._wal_thread = None
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._db.close()
            with self._readers_lock:
                for db in self._readers:
                    db.close()
                self._readers.clear()

    # -- state -------------------------------------------------------------------------------------

    def size(self) -> int:
        return _size(self._reader())

    def node_hashes(self, ids: Collection[int]) -> dict[int, bytes]:
        return _node_hashes(self._reader(), ids)

    # -- writing -----------------------------------------------------------------------------------

    def append(self, items: Sequence[Prepared], integrate: Integrate) -> Appended:
        with self._lock:
            db = self._writer()
            try:
                # Fast path: assume no event id was stored before and let the UNIQUE index say
                # otherwise; retries are rare, so the per-id lookup runs only when one is present.
                try:
                    done, written = self._append_once(db, items, integrate, lookup=False)
                except sqlite3.IntegrityError:
                    db.execute("ROLLBACK")
                    done, written = self._append_once(db, items, integrate, lookup=True)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise LedgerUnavailable(f"ledger write failed: {exc}") from None
            except BaseException:  # integrate refused, or we were interrupted: nothing of the batch stays
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            if written:
                self._wal_written(written + 96 * len(done.written))
            return done

    def _append_once(self, db: sqlite3.Connection, items: Sequence[Prepared], integrate: Integrate,
                     *, lookup: bool) -> tuple[Appended, int]:
        db.execute("BEGIN IMMEDIATE")  # the sequencer's lock: no other process appends until COMMIT
        size = _size(db)
        known = self._lookup(db, [p.event_id for p in items]) if lookup else {}
        new, receipts = assign_seqs(items, size, known)
        if not new:
            db.execute("ROLLBACK")
            return Appended(receipts, size, (), None), 0
        integration = integrate(_View(db, size), new)
        written = _insert_batch(db, size, new, integration.nodes, integration.upper)
        if integration.checkpoint is not None:
            db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", integration.checkpoint)
        db.execute("COMMIT")
        return Appended(receipts, size, new, integration), written

    @staticmethod
    def _lookup(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Receipt]:
        existing: dict[str, Receipt] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            q = f"SELECT event_id, seq, leaf_hash FROM entries WHERE event_id IN ({','.join('?' * len(chunk))})"  # noqa: S608
            for eid, seq, lh in db.execute(q, chunk):
                existing[eid] = Receipt(seq, lh, eid, duplicate=True)
        return existing

    def add_checkpoint(self, row: CheckpointRow) -> None:
        with self._lock:
            db = self._writer()
            try:
                db.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?)", tuple(row))
            except sqlite3.Error as exc:
                raise LedgerUnavailable(f"cannot store checkpoint: {exc}") from None

    # -- lookups -----------------------------------------------------------------------------------

    def get(self, seq: int) -> StoredEntry | None:
        row = self._reader().execute(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq = ?", (seq,)).fetchone()  # noqa: S608
        return StoredEntry(*row) if row else None

    def by_event_ids(self, event_ids: Sequence[str]) -> dict[str, StoredEntry]:
        out: dict[str, StoredEntry] = {}
        ids = list(dict.fromkeys(event_ids))
        db = self._reader()
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            q = f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE event_id IN ({','.join('?' * len(chunk))})"  # noqa: S608
            for row in db.execute(q, chunk):
                out[row[1]] = StoredEntry(*row)
        return out

    def entries(self, start: int, end: int) -> Iterator[StoredEntry]:
        cur = self._reader().execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)  # noqa: S608
        )
        return (StoredEntry(*row) for row in cur)

    def citizen_entries(self, key: int, since_us: int, until_us: int, after_seq: int = -1) -> Iterator[StoredEntry]:
        db = self._reader()
        top = db.execute("SELECT max(seq) FROM entries").fetchone()[0]
        if top is None:
            return
        segments = list(range(max(after_seq, 0) >> SEGMENT_BITS, (top >> SEGMENT_BITS) + 1))
        for i in range(0, len(segments), _IN_CHUNK):
            chunk = segments[i : i + _IN_CHUNK]
            q = (
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE (seq >> 18) IN "  # noqa: S608
                f"({','.join('?' * len(chunk))}) AND citizen_key = ? AND citizen_key IS NOT NULL "
                "AND time_us >= ? AND time_us < ? AND seq > ? ORDER BY seq"
            )
            for row in db.execute(q, (*chunk, key, since_us, until_us, after_seq)):
                yield StoredEntry(*row)

    # -- checkpoints -------------------------------------------------------------------------------

    def latest_checkpoint(self) -> CheckpointRow | None:
        return _latest_checkpoint(self._reader())

    def checkpoint_at(self, size: int) -> CheckpointRow | None:
        row = self._reader().execute(
            "SELECT size, root, time_us, note FROM checkpoints WHERE size = ?", (size,)
        ).fetchone()
        return CheckpointRow(*row) if row else None

    def checkpoints(self) -> Iterator[CheckpointRow]:
        cur = self._reader().execute("SELECT size, root, time_us, note FROM checkpoints ORDER BY size")
        return (CheckpointRow(*row) for row in cur)

    # -- whole-store reads -------------------------------------------------------------------------

    def scan(self, start: int | None = None, limit: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        # The cursor itself: verify streams millions of rows, and a Python layer per row would cost it.
        q = "SELECT seq, leaf_hash, body FROM entries"
        args: list[int] = []
        if start is not None:
            q += " WHERE seq >= ?"
            args.append(start)
        q += " ORDER BY seq"
        if limit is not None:
            q += " LIMIT ?"
            args.append(limit)
        return self._reader().execute(q, args)

    def scan_nodes(self) -> Iterator[tuple[int, bytes]]:
        # Both tables are ordered by id: SQLite merges the two scans (no sort) into one id-ordered stream.
        return self._reader().execute(
            "SELECT id, hash FROM nodes UNION ALL SELECT id, hash FROM upper_nodes ORDER BY id"
        )

    def probe(self) -> None:
        # Its own short-timeout connection: a readiness check must answer in seconds, not wait out
        # the 30 s lock timeout of the writers; and a probe row, never a log entry.
        try:
            db = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
            try:
                db.execute("PRAGMA synchronous=FULL")
                db.execute("BEGIN IMMEDIATE")
                db.execute("CREATE TABLE IF NOT EXISTS ztcp_probe (id INTEGER PRIMARY KEY, time REAL NOT NULL)")
                db.execute("INSERT OR REPLACE INTO ztcp_probe VALUES (1, ?)", (time.time(),))
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"ledger {self.path} cannot write: {exc}") from None

    def backup_to(self, path: str | Path) -> None:
        target = Path(path)
        if target.exists():
            raise FileExistsError(f"{target} exists; a ledger copy is only written to a new file")
        try:
            source = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.timeout)
            try:
                dest = sqlite3.connect(target)
                try:
                    # One step, one read transaction: in WAL mode writers go on meanwhile, and the copy
                    # is the file as of its start (whole transactions, so whole batches). Stepwise
                    # copying restarts whenever another connection writes: a busy ledger would never finish.
                    source.backup(dest, pages=-1)
                    dest.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no WAL beside it
                finally:
                    dest.close()
            finally:
                source.close()
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"cannot copy ledger {self.path}: {exc}") from None
