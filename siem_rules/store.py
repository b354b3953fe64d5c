"""The engine's embedded event store (SQLite, WAL): one flat table per event kind, indexed by time.

Rows get a monotonically increasing ``rid`` at ingestion; per-rule watermarks are rids, so "what
is new since the last run" is a primary-key range, and the lookback a correlation needs is a
range on the ``ts`` index. Neither grows with the total history. Re-ingesting an event (same
event id) is a no-op, so a source can safely replay after a crash.
"""

from __future__ import annotations

import gc
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import SiemError
from .events import FIELDS, KINDS, Flattener, normalise, validate

TABLE = {kind: f"ev_{kind}" for kind in KINDS}


def _ddl(kind: str) -> list[str]:
    cols = []
    for c in FIELDS[kind][1:]:  # [0] is the event id
        coll = " COLLATE NOCASE" if c.sqltype == "TEXT" else ""
        cols.append(f'"{c.column}" {c.sqltype}{coll}')
    t = TABLE[kind]
    return [
        f"CREATE TABLE IF NOT EXISTS {t} (rid INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
        f"ts REAL NOT NULL, {', '.join(cols)})",
        f"CREATE INDEX IF NOT EXISTS {t}_ts ON {t}(ts)",
    ]


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating 0600) the SIEM database with the pragmas the engine relies on."""
    if str(path) != ":memory:":
        p = Path(path)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            import os

            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    # Switching to WAL needs a moment of exclusivity and SQLite reports BUSY without waiting, so
    # a second process opening the store at the same time (serve + CLI) retries briefly.
    for attempt in range(100):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 99:
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


def _add_new_columns(conn: sqlite3.Connection, kind: str) -> None:
    """A store made by an earlier version gets the columns of fields added since (NULL for the
    events it already holds), so an upgrade needs no rebuild of siem.db."""
    have = {r[1] for r in conn.execute(f"PRAGMA table_info({TABLE[kind]})")}  # noqa: S608
    for c in FIELDS[kind][1:]:
        if c.column not in have:
            coll = " COLLATE NOCASE" if c.sqltype == "TEXT" else ""
            with suppress(sqlite3.OperationalError):  # another process added it meanwhile
                conn.execute(f'ALTER TABLE {TABLE[kind]} ADD COLUMN "{c.column}" {c.sqltype}{coll}')  # noqa: S608


@contextmanager
def paused_gc() -> Iterator[None]:
    """Building hundreds of thousands of small dicts/tuples triggers repeated full GC passes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


class EventStore:
    """Flattened events of the four kinds, plus the ingestion cursors of each source."""

    def __init__(self, conn: sqlite3.Connection, timezone: str = "Asia/Taipei") -> None:
        self.conn = conn
        self.timezone = timezone
        self._flat = {kind: Flattener(kind, timezone) for kind in KINDS}
        self._insert = {}
        for kind in KINDS:
            names = ["event_id", "ts"] + [f'"{c.column}"' for c in FIELDS[kind][1:]]
            marks = ", ".join("?" * len(names))
            self._insert[kind] = f"INSERT OR IGNORE INTO {TABLE[kind]} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608
        for kind in KINDS:
            for stmt in _ddl(kind):
                conn.execute(stmt)
            _add_new_columns(conn, kind)
        conn.execute("CREATE TABLE IF NOT EXISTS siem_cursors (source TEXT PRIMARY KEY, cursor TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS siem_quarantine (id INTEGER PRIMARY KEY, source TEXT NOT NULL,"
            " kind TEXT NOT NULL, event_id TEXT, reason TEXT NOT NULL, at TEXT NOT NULL)"
        )

    def rows(
        self, kind: str, events: Iterable[dict[str, Any]], *, check: bool = True, where: str = "event"
    ) -> list[tuple[Any, ...]]:
        flat = self._flat[kind]
        out = []
        for n, event in enumerate(events):
            if check:  # against the producer's contract, as the producer wrote it
                validate(kind, event, f"{where} #{n + 1}")
            out.append(flat.row(normalise(kind, event)))
        return out

    def insert_rows(self, kind: str, rows: list[tuple[Any, ...]]) -> int:
        before = self.conn.total_changes
        self.conn.executemany(self._insert[kind], rows)
        return self.conn.total_changes - before

    def ingest(
        self,
        batch: Iterable[tuple[str, dict[str, Any]]],
        *,
        check: bool = True,
        cursor: tuple[str, str] | None = None,
        where: str = "event",
    ) -> int:
        """Validate and store (kind, event) pairs atomically, with the source cursor if given.

        All or nothing: one bad event refuses the whole batch and the cursor does not move, so
        nothing is half-ingested and nothing is skipped.
        """
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for kind, event in batch:
            by_kind.setdefault(kind, []).append(event)
        with paused_gc():
            prepared = {kind: self.rows(kind, evs, check=check, where=where) for kind, evs in by_kind.items()}
        added = 0
        with transaction(self.conn):
            for kind, rows in prepared.items():
                added += self.insert_rows(kind, rows)
            if cursor is not None:
                self.conn.execute(
                    "INSERT INTO siem_cursors(source, cursor) VALUES (?, ?) "
                    "ON CONFLICT(source) DO UPDATE SET cursor=excluded.cursor",
                    cursor,
                )
        return added

    def ingest_skipping_bad(
        self, batch: list[tuple[str, dict[str, Any]]], *, cursor: tuple[str, str], where: str
    ) -> tuple[int, int]:
        """For live feeds: store the valid events, quarantine the invalid ones (source, kind, event id
        and the schema error — never the event's values), move the cursor. Returns (stored, quarantined).

        A live store must not be able to blind the SIEM with one malformed event (a poison pill)."""
        good: list[tuple[str, dict[str, Any]]] = []
        bad: list[tuple[str, str, str | None, str]] = []
        for i, (kind, event) in enumerate(batch):
            try:
                self.rows(kind, [event], check=True, where=f"{where} #{i + 1}")
            except SiemError as exc:
                event_id = event.get("event_id") or event.get("decision_id")
                bad.append((cursor[0], kind, str(event_id)[:64] if event_id else None, str(exc)[:500]))
                continue
            good.append((kind, event))
        added = self.ingest(good, check=False, cursor=cursor, where=where)
        if bad:
            now = datetime.now(UTC).isoformat()
            with transaction(self.conn):
                self.conn.executemany(
                    "INSERT INTO siem_quarantine(source, kind, event_id, reason, at) VALUES (?, ?, ?, ?, ?)",
                    [(*b, now) for b in bad],
                )
        return added, len(bad)

    def quarantined(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT source, kind, event_id, reason, at FROM siem_quarantine ORDER BY id")
        return [dict(zip(("source", "kind", "event_id", "reason", "at"), r, strict=True)) for r in rows]

    def cursor(self, source: str) -> str | None:
        row = self.conn.execute("SELECT cursor FROM siem_cursors WHERE source=?", (source,)).fetchone()
        return row[0] if row else None

    def high_water(self, kind: str) -> int:
        row = self.conn.execute(f"SELECT MAX(rid) FROM {TABLE[kind]}").fetchone()  # noqa: S608
        return int(row[0] or 0)

    def by_ids(self, event_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """The stored (flattened) copies of these events, of any kind, as (kind, column → value)
        oldest first — an alert's evidence. References only: the store never holds personal values."""
        if not event_ids:
            return []
        out: list[tuple[str, dict[str, Any]]] = []
        for i in range(0, len(event_ids), 900):  # stay under SQLite's host-parameter limit
            chunk = event_ids[i : i + 900]
            marks = ",".join("?" * len(chunk))
            for kind in KINDS:
                cur = self.conn.execute(f"SELECT * FROM {TABLE[kind]} WHERE event_id IN ({marks})", chunk)  # noqa: S608
                names = [d[0] for d in cur.description]
                out.extend((kind, dict(zip(names, row, strict=True))) for row in cur.fetchall())
        out.sort(key=lambda item: (item[1]["ts"], item[1]["event_id"]))
        return out

    def count(self, kind: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {TABLE[kind]}").fetchone()[0])  # noqa: S608
