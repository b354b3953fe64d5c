"""The exchange register (``ZTCP_HOME/exchange.db``): every transfer, its job state and its receipt.

ztcp keeps the record, not the payload: a transfer row holds ids, digests, counts, states and the
paths of its output directory; the staging table holds a running batch's input as ``citizen_ref``
and blind-index values only (never a national ID) and is emptied when the batch completes.

A batch job's progress (``next_line``, segment counter, payload offset, ledger seq ranges) is
committed after the segment it describes is fsync'd, so a job killed with -9 resumes from the last
committed segment: no record twice, none missing (the ledger is idempotent by event id for the
chunk that may have been recorded but not yet committed here).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.errors import ExchangeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
  transfer_id TEXT PRIMARY KEY,
  direction TEXT NOT NULL,              -- outbound | inbound
  agreement_id TEXT NOT NULL,
  agency TEXT NOT NULL,
  dataset TEXT,
  state TEXT NOT NULL,                  -- staged | running | complete | failed
  operator TEXT,
  created_at REAL NOT NULL,
  completed_at REAL,
  output_dir TEXT,
  input_sha256 TEXT,
  citizens INTEGER NOT NULL DEFAULT 0,
  not_found INTEGER NOT NULL DEFAULT 0,
  payload_sha256 TEXT,
  record_sha256 TEXT,
  transfer_seq INTEGER,
  receipt_key TEXT,                     -- the agency's receipt JWK (public) at send time
  receipt_due REAL,
  receipt_status TEXT,                  -- outstanding | received | overdue (inbound: null)
  receipt_at REAL,
  timestamp_status TEXT,                -- stamped | pending | none
  job TEXT NOT NULL DEFAULT '{}'        -- the batch's progress (JSON)
);
CREATE INDEX IF NOT EXISTS ix_transfers_receipt ON transfers (receipt_status, receipt_due);
CREATE TABLE IF NOT EXISTS staging (
  transfer_id TEXT NOT NULL,
  line INTEGER NOT NULL,
  citizen_ref TEXT NOT NULL,
  bidx TEXT,
  PRIMARY KEY (transfer_id, line)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_staging_ref ON staging (transfer_id, citizen_ref);
"""

_COLUMNS = ("transfer_id", "direction", "agreement_id", "agency", "dataset", "state", "operator", "created_at",
            "completed_at", "output_dir", "input_sha256", "citizens", "not_found", "payload_sha256",
            "record_sha256", "transfer_seq", "receipt_key", "receipt_due", "receipt_status", "receipt_at",
            "timestamp_status", "job")


@dataclass
class Transfer:
    transfer_id: str
    direction: str
    agreement_id: str
    agency: str
    dataset: str | None
    state: str
    operator: str | None
    created_at: float
    completed_at: float | None = None
    output_dir: str | None = None
    input_sha256: str | None = None
    citizens: int = 0
    not_found: int = 0
    payload_sha256: str | None = None
    record_sha256: str | None = None
    transfer_seq: int | None = None
    receipt_key: str | None = None
    receipt_due: float | None = None
    receipt_status: str | None = None
    receipt_at: float | None = None
    timestamp_status: str | None = None
    job: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {c: getattr(self, c) for c in _COLUMNS if c not in ("job", "receipt_key")}
        d["progress"] = {k: self.job.get(k) for k in ("lines", "done_lines", "released", "segments")
                         if k in self.job}
        return d


class ExchangeStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # job progress must survive a power cut with its fsync'd segment
            self._local.conn = conn
            with contextlib.suppress(OSError):
                self.path.chmod(0o600)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- transfers -------------------------------------------------------------------------------

    def insert(self, t: Transfer) -> None:
        row = [getattr(t, c) if c != "job" else json.dumps(t.job) for c in _COLUMNS]
        try:
            self._conn().execute(f"INSERT INTO transfers ({', '.join(_COLUMNS)}) VALUES "  # noqa: S608
                                 f"({', '.join('?' * len(_COLUMNS))})", row)
        except sqlite3.IntegrityError:
            raise ExchangeError(f"transfer {t.transfer_id} already exists") from None

    def update(self, transfer_id: str, **values: Any) -> None:
        if not values:
            return
        for k in values:
            if k not in _COLUMNS or k == "transfer_id":
                raise ValueError(f"not a transfer column: {k}")
        sets = ", ".join(f"{k} = ?" for k in values)
        args = [json.dumps(v) if k == "job" else v for k, v in values.items()]
        self._conn().execute(f"UPDATE transfers SET {sets} WHERE transfer_id = ?", [*args, transfer_id])  # noqa: S608

    def get(self, transfer_id: str) -> Transfer | None:
        r = self._conn().execute(f"SELECT {', '.join(_COLUMNS)} FROM transfers WHERE transfer_id = ?",  # noqa: S608
                                 (transfer_id,)).fetchone()
        return self._row(r) if r else None

    def by_output_dir(self, output_dir: str) -> Transfer | None:
        r = self._conn().execute(f"SELECT {', '.join(_COLUMNS)} FROM transfers WHERE output_dir = ? "  # noqa: S608
                                 "ORDER BY created_at DESC LIMIT 1", (output_dir,)).fetchone()
        return self._row(r) if r else None

    def all(self, direction: str | None = None) -> list[Transfer]:
        q = f"SELECT {', '.join(_COLUMNS)} FROM transfers"  # noqa: S608
        args: tuple = ()
        if direction:
            q += " WHERE direction = ?"
            args = (direction,)
        return [self._row(r) for r in self._conn().execute(q + " ORDER BY created_at", args)]

    def overdue(self, now: float) -> list[Transfer]:
        q = (f"SELECT {', '.join(_COLUMNS)} FROM transfers WHERE receipt_status = 'outstanding' "  # noqa: S608
             "AND receipt_due IS NOT NULL AND receipt_due <= ? AND state = 'complete'")
        return [self._row(r) for r in self._conn().execute(q, (now,))]

    def pending_timestamps(self) -> list[Transfer]:
        q = (f"SELECT {', '.join(_COLUMNS)} FROM transfers WHERE timestamp_status = 'pending' "  # noqa: S608
             "AND state = 'complete'")
        return [self._row(r) for r in self._conn().execute(q)]

    @staticmethod
    def _row(r: tuple) -> Transfer:
        d = dict(zip(_COLUMNS, r, strict=True))
        d["job"] = json.loads(d["job"] or "{}")
        return Transfer(**d)

    # -- staging ---------------------------------------------------------------------------------

    def stage(self, transfer_id: str, rows: Iterable[tuple[int, str, str | None]], batch: int = 20_000) -> int:
        """Store the input (line, citizen_ref, blind-index values) in one transaction."""
        conn = self._conn()
        n = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM staging WHERE transfer_id = ?", (transfer_id,))
            buf: list[tuple] = []
            for line, ref, bidx in rows:
                buf.append((transfer_id, line, ref, bidx))
                if len(buf) >= batch:
                    conn.executemany("INSERT INTO staging VALUES (?, ?, ?, ?)", buf)
                    n += len(buf)
                    buf.clear()
            if buf:
                conn.executemany("INSERT INTO staging VALUES (?, ?, ?, ?)", buf)
                n += len(buf)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n

    def duplicates(self, transfer_id: str, limit: int = 5) -> list[tuple[int, int]]:
        """(first line, repeating line) pairs naming the same citizen."""
        q = ("SELECT MIN(line), MAX(line) FROM staging WHERE transfer_id = ? GROUP BY citizen_ref "
             "HAVING COUNT(*) > 1 ORDER BY MIN(line) LIMIT ?")
        return [(a, b) for a, b in self._conn().execute(q, (transfer_id, limit))]

    def staged(self, transfer_id: str, after_line: int, limit: int) -> list[tuple[int, str, str | None]]:
        q = "SELECT line, citizen_ref, bidx FROM staging WHERE transfer_id = ? AND line > ? ORDER BY line LIMIT ?"
        return list(self._conn().execute(q, (transfer_id, after_line, limit)))

    def iter_staged(self, transfer_id: str, after_line: int, chunk: int) -> Iterator[list[tuple[int, str, str | None]]]:
        while True:
            rows = self.staged(transfer_id, after_line, chunk)
            if not rows:
                return
            yield rows
            after_line = rows[-1][0]

    def staged_count(self, transfer_id: str) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM staging WHERE transfer_id = ?",
                                        (transfer_id,)).fetchone()[0])

    def unstage(self, transfer_id: str) -> None:
        self._conn().execute("DELETE FROM staging WHERE transfer_id = ?", (transfer_id,))


def now() -> float:
    return time.time()
