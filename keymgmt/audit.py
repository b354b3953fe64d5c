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

``iter_since(cursor)`` yields ``(seq, event)`` with ``seq > cursor`` in order; the SIEM stores the
last seq it saw and asks again, so the read cost is independent of history size.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.key_event import KeyAuditEvent
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
        try:
            self._conn().execute(
                f"INSERT INTO key_audit ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})",  # noqa: S608
                [row[c] for c in _COLS],
            )
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

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def default_audit_path(home: Path) -> Path:
    return Path(home) / AUDIT_FILENAME
