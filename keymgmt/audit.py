"""Key audit events for the SIEM: every key operation, refusal and bulk decryption.

Stored in SQLite (``ZTCP_HOME/keyaudit.db``, WAL), table ``key_audit``::

    seq         INTEGER PRIMARY KEY AUTOINCREMENT   cursor for incremental readers
    event_id    TEXT UNIQUE    UUIDv7
    time        TEXT           ISO-8601 UTC
    type        TEXT           key.create | key.rotate | key.rewrap | key.retire | key.decrypt |
                               key.decrypt_refused | key.bulk_decrypt | key.reencrypt
                               (encrypt-table is key.reencrypt with reason "encrypt-table")
    actor       TEXT           OS user / service account / token subject
    key_name    TEXT           the KEK / HMAC / signing key concerned (decrypt events: the KEK)
    key_version INTEGER NULL
    dataset     TEXT NULL
    count       INTEGER NULL   rows / DEKs affected
    reason      TEXT NULL      refusal code or note (never a value, never a raw identifier)
    decision_id TEXT NULL

plus ``link BLOB``: the event's hash-chain link (:mod:`contracts.log_chain`; the chained record is
the row's columns above, as stored), appended under SQLite's write lock so concurrent writers
cannot fork the chain. ``key_audit_chain`` holds the head, ``key_audit_prune_marks`` what
retention deleted and ``key_audit_heads`` the signed heads (:mod:`contracts.chained_log`). A file
from before the chain gets its events chained, in order, the first time it is opened for writing.

``iter_since(cursor)`` yields ``(seq, event)`` with ``seq > cursor`` in order; the SIEM stores the
last seq it saw and asks again, so the read cost is independent of history size.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.chained_log import PruneMark, PruneResult, SignedHead, plan_prune, superseded
from contracts.key_event import KeyAuditEvent
from contracts.log_chain import GENESIS, link
from keymgmt.errors import KeyMgmtError

AUDIT_FILENAME = "keyaudit.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    key_name TEXT,
    key_version INTEGER,
    dataset TEXT,
    count INTEGER,
    reason TEXT,
    decision_id TEXT
);
CREATE INDEX IF NOT EXISTS key_audit_type ON key_audit(type, seq);
"""
_CHAIN_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS key_audit_chain (id INTEGER PRIMARY KEY CHECK (id = 1), head BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS key_audit_prune_marks (after_seq INTEGER PRIMARY KEY,
       through_seq INTEGER NOT NULL, link BLOB NOT NULL, count INTEGER NOT NULL, note TEXT, at REAL NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS key_audit_heads (seq INTEGER PRIMARY KEY, note TEXT NOT NULL, at REAL NOT NULL)",
)
LOG_NAME = "key_audit"
PRUNE_WINDOW = 5000
_COLS = ("event_id", "time", "type", "actor", "key_name", "key_version", "dataset", "count", "reason",
         "decision_id")


class KeyAuditLog:
    """Append-only key audit store (one SQLite file; safe for several processes)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock  # stamps events recorded without a time (a simulated clock in the demo)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            # Created 0600 up front: audit records name keys and datasets.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._local = threading.local()
        with self._conn() as db:
            db.executescript(_SCHEMA)
            self._chain_upgrade(db)

    def _chain_upgrade(self, db: sqlite3.Connection) -> None:
        """Give a file from before the chain its link column and chain its events (once, atomically)."""
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'key_audit_chain'").fetchone():
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'key_audit_chain'").fetchone():
                cols = {r[1] for r in db.execute("PRAGMA table_info(key_audit)")}
                if "link" not in cols:
                    db.execute("ALTER TABLE key_audit ADD COLUMN link BLOB")
                for statement in _CHAIN_SCHEMA:
                    db.execute(statement)
                head = GENESIS
                rows = db.execute(f"SELECT seq, {', '.join(_COLS)} FROM key_audit ORDER BY seq").fetchall()  # noqa: S608
                links = []
                for r in rows:
                    head = link(head, dict(zip(_COLS, r[1:], strict=True)))
                    links.append((head, r[0]))
                db.executemany("UPDATE key_audit SET link = ? WHERE seq = ?", links)
                db.execute("INSERT INTO key_audit_chain VALUES (1, ?)", (head,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def record(self, event: KeyAuditEvent | None = None, /, **fields: object) -> KeyAuditEvent:
        if event is None:
            fields.setdefault("time", datetime.fromtimestamp(self.clock(), tz=UTC))
        ev = event if event is not None else KeyAuditEvent.model_validate(fields)
        row = ev.model_dump()
        row["time"] = ev.time.astimezone(UTC).isoformat(timespec="microseconds")
        values = [row[c] for c in _COLS]
        try:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")  # the write lock orders writers: one head, no fork
            try:
                head = db.execute("SELECT head FROM key_audit_chain").fetchone()[0]
                new = link(head, dict(zip(_COLS, values, strict=True)))
                db.execute(
                    f"INSERT INTO key_audit ({', '.join(_COLS)}, link) VALUES ({', '.join('?' * len(_COLS))}, ?)",  # noqa: S608
                    [*values, new],
                )
                db.execute("UPDATE key_audit_chain SET head = ?", (new,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise KeyMgmtError(f"key audit log {self.path} unavailable: {exc}") from None
        return ev

    def iter_since(self, cursor: int = 0, limit: int | None = None) -> Iterator[tuple[int, KeyAuditEvent]]:
        q = f"SELECT seq, {', '.join(_COLS)} FROM key_audit WHERE seq > ? ORDER BY seq"  # noqa: S608
        args: list[object] = [cursor]
        if limit is not None:
            q += " LIMIT ?"
            args.append(limit)
        for r in self._conn().execute(q, args).fetchall():
            yield r[0], KeyAuditEvent.model_validate(dict(zip(_COLS, r[1:], strict=True)))

    def events_after(self, cursor: int | str | None, limit: int = 50_000) -> tuple[list[dict[str, Any]], int]:
        """For ``siem_rules.CallableSource``: JSON-ready events after ``cursor`` and the new cursor."""
        start = int(cursor or 0)
        out: list[dict[str, Any]] = []
        last = start
        for seq, ev in self.iter_since(start, limit):
            d = ev.model_dump(mode="json", exclude_none=True)
            d["time"] = ev.time.astimezone(UTC).isoformat().replace("+00:00", "Z")
            out.append(d)
            last = seq
        return out, last

    # -- the chain (contracts.chained_log.ChainedLog) and retention ---------------------------------
    chain_name = LOG_NAME

    def chain_rows(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, dict[str, Any], bytes]]:
        rows = self._conn().execute(
            f"SELECT seq, {', '.join(_COLS)}, link FROM key_audit WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (after, limit)).fetchall()
        return [(r[0], dict(zip(_COLS, r[1:-1], strict=True)), r[-1] or b"") for r in rows]

    def chain_head(self) -> tuple[int, bytes]:
        row = self._conn().execute("SELECT seq, link FROM key_audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, GENESIS)

    def prune_marks(self) -> list[PruneMark]:
        return [PruneMark(a, t, bytes(lk), c, n) for a, t, lk, c, n in self._conn().execute(
            "SELECT after_seq, through_seq, link, count, note FROM key_audit_prune_marks ORDER BY after_seq")]

    def signed_heads(self) -> list[SignedHead]:
        return [SignedHead(s, n) for s, n in self._conn().execute("SELECT seq, note FROM key_audit_heads ORDER BY seq")]

    def add_signed_head(self, position: int, note: str) -> None:
        self._conn().execute("INSERT OR REPLACE INTO key_audit_heads VALUES (?, ?, ?)", (position, note, time.time()))

    def prune(self, before: float, held: object = None, sign_mark: Callable[[PruneMark], str] | None = None, *,
              apply: bool = True) -> PruneResult:
        """Delete events older than ``before`` (epoch seconds), leaving signed prune marks. Key events
        name keys and datasets, never a citizen or a case, so no legal hold concerns them (``held``
        is accepted for a uniform interface and ignored)."""
        cutoff = datetime.fromtimestamp(before, tz=UTC).isoformat(timespec="microseconds")
        db = self._conn()
        deleted = made = 0
        top = db.execute("SELECT max(seq) FROM key_audit WHERE time < ?", (cutoff,)).fetchone()[0]
        lo = 1
        # A window of events per transaction: writers (decrypts record here) wait for one at most.
        while top is not None and lo <= top:
            db.execute("BEGIN IMMEDIATE")
            try:
                kept = db.execute("SELECT coalesce(max(seq), 0) FROM key_audit WHERE seq < ?", (lo,)).fetchone()[0]
                rows: Sequence[tuple[int, bool, bytes]] = [
                    (seq, t < cutoff, lk) for seq, t, lk in db.execute(
                        "SELECT seq, time, link FROM key_audit WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                        (lo, top, PRUNE_WINDOW))]
                if not rows:
                    db.execute("ROLLBACK")
                    break
                marks = self.prune_marks()
                runs, new = plan_prune(list(rows), marks, kept)
                deleted += sum(len(r.positions) for r in runs)
                if apply:
                    for run in runs:
                        db.execute("DELETE FROM key_audit WHERE seq > ? AND seq <= ?", (run.after, run.through))
                    gone = superseded(marks, new)
                    db.executemany("DELETE FROM key_audit_prune_marks WHERE after_seq = ?", [(a,) for a in gone])
                    db.executemany("INSERT INTO key_audit_prune_marks VALUES (?, ?, ?, ?, ?, ?)",
                                   [(m.after, m.through, m.link, m.count, sign_mark(m) if sign_mark else None,
                                     time.time()) for m in new])
                    made += len(new) - len(set(gone) & {m.after for m in new})
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT" if apply else "ROLLBACK")
            lo = rows[-1][0] + 1
        return PruneResult(LOG_NAME, deleted, 0, made)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def default_audit_path(home: Path) -> Path:
    return Path(home) / AUDIT_FILENAME
