"""The SQLite drivers of the decision log and the signal history: embedded files in ``ZTCP_HOME``.

The default (``ZTCP_DATABASE_URL`` unset): one ``ztcp serve`` per home. WAL mode, so readers (the
SIEM, ``ztcp policy simulate``, the console) never block the writer. Layouts and their versions are
in ``DECISION_MIGRATIONS`` and ``SIGNAL_MIGRATIONS``; version 1 of each is the layout ztcp wrote
before stores were versioned, so files from then are adopted as they are (see :mod:`pdp.storage`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from contracts.chained_log import PruneMark, PruneResult, SignedHead
from contracts.log_chain import GENESIS
from pdp.decision_chain import (
    LOG_NAME,
    PRUNE_WINDOW,
    chain_existing,
    chain_links,
    chain_record,
    head_from_row,
    mark_from_row,
    prune_plan,
)
from pdp.devices import UNKNOWN_DEVICE
from pdp.storage import (
    OBSERVATION_COLUMNS,
    Migration,
    check_sqlite,
    decision_row,
    migrate_sqlite,
    unavailable,
)

if TYPE_CHECKING:
    from pdp.signals import Observation, Snapshot

DECISION_MIGRATIONS = (
    Migration(1, "decisions: seq, id, time, indexed subject/citizen/effect/revision, the entry as JSON", (
        """CREATE TABLE IF NOT EXISTS decisions (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          decision_id TEXT NOT NULL UNIQUE,
          timestamp TEXT NOT NULL,
          ts REAL NOT NULL,
          subject_id TEXT,
          citizen_ref TEXT,
          effect TEXT NOT NULL,
          revision TEXT,
          entry BLOB NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS decisions_ts ON decisions(ts)",
        "CREATE INDEX IF NOT EXISTS decisions_subject ON decisions(subject_id, ts)",
    )),
    # The hash chain (pdp.decision_chain): a link per entry, the head, prune marks and signed heads;
    # entries already stored are chained in seq order in the same transaction.
    Migration(2, "decisions: hash chain (link, head, prune marks, signed heads); existing entries chained", (
        "ALTER TABLE decisions ADD COLUMN link BLOB",
        "CREATE TABLE decision_chain (id INTEGER PRIMARY KEY CHECK (id = 1), head BLOB NOT NULL)",
        """CREATE TABLE decision_prune_marks (after_seq INTEGER PRIMARY KEY, through_seq INTEGER NOT NULL,
          link BLOB NOT NULL, count INTEGER NOT NULL, note TEXT, at REAL NOT NULL)""",
        "CREATE TABLE decision_heads (seq INTEGER PRIMARY KEY, note TEXT NOT NULL, at REAL NOT NULL)",
    ), run=lambda conn: _chain_existing(conn)),
)


def _chain_existing(conn: sqlite3.Connection) -> None:
    def store(links: list[tuple[bytes, int]]) -> None:
        conn.executemany("UPDATE decisions SET link = ? WHERE seq = ?", links)

    head = chain_existing(
        lambda after: conn.execute("SELECT seq, decision_id, entry FROM decisions WHERE seq > ? ORDER BY seq "
                                   "LIMIT 5000", (after,)).fetchall(), store)
    conn.execute("INSERT INTO decision_chain VALUES (1, ?)", (head,))

_OBS = ", ".join(OBSERVATION_COLUMNS)
SIGNAL_MIGRATIONS = (
    Migration(1, "observations (no id), first-seen devices and datasets", (
        """CREATE TABLE IF NOT EXISTS observations (
          ts REAL NOT NULL, subject TEXT NOT NULL, device TEXT, citizen_ref TEXT, dataset TEXT,
          lat REAL, lon REAL, effect TEXT NOT NULL, resource_key TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS observations_ts ON observations(ts)",
        """CREATE TABLE IF NOT EXISTS known_devices (
          subject TEXT NOT NULL, device TEXT NOT NULL, first_seen REAL NOT NULL, PRIMARY KEY (subject, device))""",
        """CREATE TABLE IF NOT EXISTS known_datasets (
          subject TEXT NOT NULL, dataset TEXT NOT NULL, first_seen REAL NOT NULL, PRIMARY KEY (subject, dataset))""",
    )),
    # Another process may follow the file by id (AUTOINCREMENT: ids never go back, even after the
    # newest rows are pruned), and (origin, oseq) makes a retried batch a no-op. SQLite cannot add
    # a primary key to a table, so the table is rebuilt; old rows keep their order and get origin 'v1'.
    Migration(2, "observations get an id (a cursor), their origin and a per-origin sequence", (
        """CREATE TABLE observations_v2 (
          id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, oseq INTEGER NOT NULL,
          ts REAL NOT NULL, subject TEXT NOT NULL, device TEXT, citizen_ref TEXT, dataset TEXT,
          lat REAL, lon REAL, effect TEXT NOT NULL, resource_key TEXT NOT NULL, UNIQUE (origin, oseq))""",
        f"INSERT INTO observations_v2 (origin, oseq, {_OBS}) SELECT 'v1', rowid, {_OBS} FROM observations "  # noqa: S608
        "ORDER BY ts, rowid",
        "DROP TABLE observations",
        "ALTER TABLE observations_v2 RENAME TO observations",
        "CREATE INDEX observations_ts ON observations(ts)",
        "CREATE INDEX observations_subject ON observations(subject, id)",
    )),
)


def _ro(path: Path, timeout: float = 30.0) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)


def _rw(path: Path, timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a process crash; only an OS crash can lose the last commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class SqliteDecisionStore:
    """The decision log in ``path``. Reads open a read-only connection each (any thread, any process)."""

    component = "decision_log"
    migrations = DECISION_MIGRATIONS
    batch_interval = 0.0  # a local commit is cheap: write as soon as there is something

    def __init__(self, path: Path | str, *, readonly: bool = False, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self.readonly = readonly
        if readonly:
            if self.path.exists():
                conn = _ro(self.path)
                try:
                    check_sqlite(conn, self.component, self.migrations)
                finally:
                    conn.close()
        else:
            conn = _rw(self.path, busy_timeout)
            try:
                migrate_sqlite(conn, self.component, self.migrations)
            finally:
                conn.close()

    def __repr__(self) -> str:
        return f"SqliteDecisionStore({str(self.path)!r})"

    # -- writing (the decision log's writer thread only) ---------------------------------------
    def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        rows = [decision_row(e) for e in entries]
        try:
            if self._conn is None:
                self._conn = _rw(self.path, self._busy_timeout)
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")  # the write lock: the head cannot move under us
            try:
                head = conn.execute("SELECT head FROM decision_chain").fetchone()[0]
                try:
                    # Optimistically, every entry is new (a repeat only comes from a retried batch)...
                    conn.execute("SAVEPOINT fresh")
                    self._append(conn, head, rows)
                    conn.execute("RELEASE fresh")
                except sqlite3.IntegrityError:
                    # ...else chain only the ids not stored yet: a repeat must not be chained twice.
                    conn.execute("ROLLBACK TO fresh")
                    conn.execute("RELEASE fresh")
                    ids = [r[0] for r in rows]
                    stored = {r[0] for r in conn.execute(
                        f"SELECT decision_id FROM decisions WHERE decision_id IN ({','.join('?' * len(ids))})",  # noqa: S608
                        ids)}
                    fresh, seen = [], set()
                    for r in rows:
                        if r[0] not in stored and r[0] not in seen:
                            seen.add(r[0])
                            fresh.append(r)
                    self._append(conn, head, fresh)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise unavailable(exc) from exc

    @staticmethod
    def _append(conn: sqlite3.Connection, head: bytes, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        links, head = chain_links(head, rows)
        conn.executemany(
            "INSERT INTO decisions (decision_id, timestamp, ts, subject_id, citizen_ref, effect,"
            " revision, entry, link) VALUES (?,?,?,?,?,?,?,?,?)",
            [(*r, lk) for r, lk in zip(rows, links, strict=True)])
        conn.execute("UPDATE decision_chain SET head = ?", (head,))

    # -- the chain (contracts.chained_log.ChainedLog) and retention -----------------------------
    chain_name = LOG_NAME

    def chain_rows(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, dict[str, Any], bytes]]:
        rows = self._read("SELECT seq, decision_id, entry, link FROM decisions WHERE seq > ? ORDER BY seq LIMIT ?",
                          (after, limit))
        return [(r[0], chain_record(r[1], r[2]), r[3] or b"") for r in rows]

    def chain_head(self) -> tuple[int, bytes]:
        rows = self._read("SELECT seq, link FROM decisions ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, GENESIS)

    def prune_marks(self) -> list[PruneMark]:
        return [mark_from_row(r) for r in self._read(
            "SELECT after_seq, through_seq, link, count, note FROM decision_prune_marks ORDER BY after_seq")]

    def signed_heads(self) -> list[SignedHead]:
        return [head_from_row(r) for r in self._read("SELECT seq, note FROM decision_heads ORDER BY seq")]

    def add_signed_head(self, position: int, note: str) -> None:
        self._write_one("INSERT OR REPLACE INTO decision_heads VALUES (?, ?, ?)", (position, note, time.time()))

    def _write_one(self, sql: str, args: tuple[Any, ...]) -> None:
        conn = _rw(self.path, self._busy_timeout)
        try:
            conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise unavailable(exc) from exc
        finally:
            conn.close()

    def prune(self, before: float, held: Callable[[str | None, str | None], bool] | None = None,
              sign_mark: Callable[[PruneMark], str] | None = None, *, apply: bool = True) -> PruneResult:
        """Delete entries older than ``before`` (epoch seconds) that no hold protects, leaving signed
        prune marks so the chain stays verifiable. ``apply=False``: only count what would go.
        One transaction per window of entries, so the decision writer never waits long."""
        entry = "entry" if held is not None else "NULL"
        deleted = kept = marks_made = 0
        conn = _rw(self.path, self._busy_timeout)
        try:
            top = conn.execute("SELECT max(seq) FROM decisions WHERE ts < ?", (before,)).fetchone()[0]
            lo = 1
            while top is not None and lo <= top:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    kept_before = conn.execute("SELECT coalesce(max(seq), 0) FROM decisions WHERE seq < ?",
                                               (lo,)).fetchone()[0]
                    rows = conn.execute(f"SELECT seq, link, citizen_ref, ts, {entry} FROM decisions "  # noqa: S608
                                        "WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                                        (lo, top, PRUNE_WINDOW)).fetchall()
                    if not rows:
                        conn.execute("ROLLBACK")
                        break
                    marks = [mark_from_row(r) for r in conn.execute(
                        "SELECT after_seq, through_seq, link, count, note FROM decision_prune_marks")]
                    runs, new, gone, held_here = prune_plan(rows, before, held, marks, kept_before)
                    deleted += sum(len(r.positions) for r in runs)
                    kept += held_here
                    if apply:
                        for run in runs:
                            conn.execute("DELETE FROM decisions WHERE seq > ? AND seq <= ?", (run.after, run.through))
                        conn.executemany("DELETE FROM decision_prune_marks WHERE after_seq = ?",
                                         [(a,) for a in gone])
                        now = time.time()
                        conn.executemany("INSERT INTO decision_prune_marks VALUES (?, ?, ?, ?, ?, ?)",
                                         [(m.after, m.through, m.link, m.count,
                                           sign_mark(m) if sign_mark else None, now) for m in new])
                        marks_made += len(new) - len(set(gone) & {m.after for m in new})
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT" if apply else "ROLLBACK")
                lo = rows[-1][0] + 1
            return PruneResult(LOG_NAME, deleted, kept, marks_made)
        except sqlite3.Error as exc:
            raise unavailable(exc) from exc
        finally:
            conn.close()

    # -- reading -------------------------------------------------------------------------------
    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = _ro(self.path)
        except sqlite3.Error as exc:
            raise unavailable(exc) from exc
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise unavailable(exc) from exc
        finally:
            conn.close()

    def get(self, decision_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT entry FROM decisions WHERE decision_id = ?", (decision_id,))
        return orjson.loads(rows[0][0]) if rows else None

    def entries(self, *, since: float | None = None, last: int | None = None) -> list[dict[str, Any]]:
        if last is not None:
            rows = self._read("SELECT entry FROM (SELECT seq, entry FROM decisions ORDER BY seq DESC LIMIT ?) "
                              "ORDER BY seq", (last,))
        else:
            rows = self._read("SELECT entry FROM decisions WHERE ts >= ? ORDER BY seq", (since or 0.0,))
        return [orjson.loads(r[0]) for r in rows]

    def iter_since(self, cursor: int = 0, limit: int = 10_000) -> tuple[list[dict[str, Any]], int]:
        rows = self._read("SELECT seq, entry FROM decisions WHERE seq > ? ORDER BY seq LIMIT ?", (cursor, limit))
        if not rows:
            return [], cursor
        return [orjson.loads(r[1]) for r in rows], rows[-1][0]

    def cursor(self) -> int:
        return int(self._read("SELECT coalesce(max(seq), 0) FROM decisions")[0][0])

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM decisions")[0][0])

    def count_after(self, cursor: int) -> int:
        return int(self._read("SELECT count(*) FROM decisions WHERE seq > ?", (cursor,))[0][0])

    def counts_by_effect(self) -> dict[str, int]:
        return dict(self._read("SELECT effect, count(*) FROM decisions GROUP BY effect"))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class SqliteSignalStore:
    """Observations of decisions and first-seen devices/datasets in ``path``.

    ``shared=False`` (the default, one ``ztcp serve`` per home): the signal history never needs to
    read back what it wrote except at start. ``shared=True``: other processes write here too, and
    the history follows them by polling ``after()`` every ``poll_interval`` (SQLite has no
    notifications); the PostgreSQL driver is the one meant for replicas.
    """

    component = "signals"
    migrations = SIGNAL_MIGRATIONS
    poll_interval = 0.25
    # The write-behind interval of the history on this store: SQLite batches twice a second, as ztcp
    # always did (a commit per decision would cost the decide path's core more than it buys).
    flush_interval = 0.5
    batch_interval = 0.0

    def __init__(self, path: Path | str, *, shared: bool = False, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.shared = shared
        self._busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._stop = threading.Event()
        conn = _rw(self.path, busy_timeout)
        try:
            migrate_sqlite(conn, self.component, self.migrations)
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"SqliteSignalStore({str(self.path)!r})"

    def _rconn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = _rw(self.path, self._busy_timeout)
        return self._reader

    def load(self, since: float) -> Snapshot:
        """(observations at or after ``since`` in time order, known (subject, device), known (subject,
        dataset), the id cursor), all from one snapshot."""
        with self._read_lock:
            try:
                conn = self._rconn()
                conn.execute("BEGIN")
                try:
                    hi = conn.execute("SELECT coalesce(max(id), 0) FROM observations").fetchone()[0]
                    rows = conn.execute(f"SELECT {_OBS} FROM observations WHERE ts >= ? AND id <= ? "  # noqa: S608
                                        "ORDER BY ts, id", (since, hi)).fetchall()
                    devices = conn.execute("SELECT subject, device FROM known_devices").fetchall()
                    datasets = conn.execute("SELECT subject, dataset FROM known_datasets").fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise unavailable(exc) from exc
        return rows, devices, datasets, int(hi)

    def append(self, origin: str, batch: Sequence[tuple[int, Observation]]) -> None:
        """Store ``batch`` of (oseq, observation) from ``origin``; a batch stored before is a no-op.
        Devices and datasets become known through permits only (the unknown device never)."""
        obs = [(origin, oseq, *row) for oseq, row in batch]
        devices = [(r[1], r[2], r[0]) for _, r in batch if r[2] and r[2] != UNKNOWN_DEVICE and r[7] == "permit"]
        datasets = [(r[1], r[4], r[0]) for _, r in batch if r[4] and r[7] == "permit"]
        with self._write_lock:
            try:
                if self._writer is None:
                    self._writer = _rw(self.path, self._busy_timeout)
                conn = self._writer
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(f"INSERT OR IGNORE INTO observations (origin, oseq, {_OBS}) "  # noqa: S608
                                     "VALUES (?,?,?,?,?,?,?,?,?,?,?)", obs)
                    conn.executemany("INSERT OR IGNORE INTO known_devices VALUES (?,?,?)", devices)
                    conn.executemany("INSERT OR IGNORE INTO known_datasets VALUES (?,?,?)", datasets)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise unavailable(exc) from exc

    def after(self, cursor: int, origin: str, limit: int = 5000) -> tuple[list[tuple[int, Observation]], int, bool]:
        """Observations of other origins with id > ``cursor``: (rows as (id, observation), the new
        cursor, complete). Complete means everything stored when the call began was returned."""
        with self._read_lock:
            try:
                conn = self._rconn()
                conn.execute("BEGIN")
                try:
                    hi = max(cursor, conn.execute("SELECT coalesce(max(id), 0) FROM observations").fetchone()[0])
                    rows = conn.execute(f"SELECT id, {_OBS} FROM observations WHERE id > ? AND id <= ? "  # noqa: S608
                                        "AND origin <> ? ORDER BY id LIMIT ?", (cursor, hi, origin, limit)).fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise unavailable(exc) from exc
        out = [(r[0], r[1:]) for r in rows]
        if len(out) >= limit:
            return out, out[-1][0], False
        return out, int(hi), True

    def subject_after(self, subject: str, cursor: int, origin: str) -> list[tuple[int, Observation]]:
        """One subject's observations of other origins with id > ``cursor`` (a read-through)."""
        with self._read_lock:
            try:
                rows = self._rconn().execute(
                    f"SELECT id, {_OBS} FROM observations WHERE subject = ? AND id > ? AND origin <> ? "  # noqa: S608
                    "ORDER BY id", (subject, cursor, origin)).fetchall()
            except sqlite3.Error as exc:
                raise unavailable(exc) from exc
        return [(r[0], r[1:]) for r in rows]

    def prune(self, before: float) -> None:
        with self._write_lock:
            try:
                if self._writer is None:
                    self._writer = _rw(self.path, self._busy_timeout)
                self._writer.execute("DELETE FROM observations WHERE ts < ?", (before,))
            except sqlite3.Error as exc:
                raise unavailable(exc) from exc

    def wait(self, timeout: float, origin: str) -> None:
        """Until others may have written (SQLite: just ``timeout``; ``close`` ends it early)."""
        self._stop.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        for lock, name in ((self._write_lock, "_writer"), (self._read_lock, "_reader")):
            with lock:
                conn = getattr(self, name)
                setattr(self, name, None)
                if conn is not None:
                    conn.close()

