"""The decision log: every decision, its minimised input, result, policy revision and latency.

Field names follow OPA's decision-log format where they fit (``decision_id``, ``path``, ``input``,
``result``, ``timestamp``, ``metrics``, ``bundles``), so tooling that reads OPA logs reads ours.
Writing is off the request path through a bounded queue, but nothing is dropped silently: a full
queue blocks the producer briefly (backpressure) and then refuses, and the decision point turns a
refused entry into a deny. If the store fails, entries stay queued and are retried; the log reports
itself unhealthy so ``/readyz`` and new decisions fail closed until it recovers.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from pdp.errors import DecisionLogError

log = logging.getLogger("ztcp.pdp.decision_log")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  decision_id TEXT NOT NULL UNIQUE,
  timestamp TEXT NOT NULL,
  ts REAL NOT NULL,
  subject_id TEXT,
  citizen_ref TEXT,
  effect TEXT NOT NULL,
  revision TEXT,
  entry BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions(ts);
CREATE INDEX IF NOT EXISTS decisions_subject ON decisions(subject_id, ts);
"""


class LogSink(Protocol):
    """A secondary destination (Elasticsearch data stream); failures there are retried, not fatal."""

    def write(self, entries: list[dict]) -> None: ...


class DecisionLogReader:
    """Read-only access to a decision log file (auditors, simulation, the SIEM feed)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _reader(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)

    def get(self, decision_id: str) -> dict | None:
        conn = self._reader()
        try:
            row = conn.execute("SELECT entry FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
        finally:
            conn.close()
        return orjson.loads(row[0]) if row else None

    def entries(self, *, since: float | None = None, last: int | None = None) -> list[dict]:
        """Entries in decision order: those at or after ``since`` (epoch seconds), or the ``last`` N."""
        conn = self._reader()
        try:
            if last is not None:
                rows = conn.execute("SELECT entry FROM (SELECT seq, entry FROM decisions ORDER BY seq DESC "
                                    "LIMIT ?) ORDER BY seq", (last,)).fetchall()
            else:
                rows = conn.execute("SELECT entry FROM decisions WHERE ts >= ? ORDER BY seq",
                                    (since or 0.0,)).fetchall()
        finally:
            conn.close()
        return [orjson.loads(r[0]) for r in rows]

    def iter_since(self, cursor: int = 0, limit: int = 10_000) -> tuple[list[dict], int]:
        """Entries after ``cursor`` (a sequence number) and the new cursor."""
        conn = self._reader()
        try:
            rows = conn.execute("SELECT seq, entry FROM decisions WHERE seq > ? ORDER BY seq LIMIT ?",
                                (cursor, limit)).fetchall()
        finally:
            conn.close()
        if not rows:
            return [], cursor
        return [orjson.loads(r[1]) for r in rows], rows[-1][0]

    def events_after(self, cursor: str | int | None, limit: int = 50_000) -> tuple[list[dict], int | None]:
        """The SIEM feed: ``siem_rules.CallableSource("decisions", "decision", log.events_after)``."""
        start = int(cursor) if cursor not in (None, "") else 0
        entries, new_cursor = self.iter_since(start, limit)
        return entries, (new_cursor if entries else (start or None))

    def last_seq(self) -> int:
        """The newest entry's sequence number (0 when empty): where a new feed that wants only what
        comes next (syslog forwarding) starts."""
        conn = self._reader()
        try:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM decisions").fetchone()[0])
        finally:
            conn.close()

    def count_after(self, seq: int) -> int:
        """How many entries follow ``seq`` (a feed's backlog)."""
        conn = self._reader()
        try:
            return int(conn.execute("SELECT count(*) FROM decisions WHERE seq > ?", (seq,)).fetchone()[0])
        finally:
            conn.close()

    def count(self) -> int:
        conn = self._reader()
        try:
            return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])
        finally:
            conn.close()

    def counts_by_effect(self) -> dict[str, Any]:
        conn = self._reader()
        try:
            return dict(conn.execute("SELECT effect, count(*) FROM decisions GROUP BY effect").fetchall())
        finally:
            conn.close()


class DecisionLog(DecisionLogReader):
    """The writer (one per process) plus everything the reader offers."""

    @staticmethod
    def reader(path: Path) -> DecisionLogReader:
        return DecisionLogReader(path)

    def __init__(self, path: Path, *, queue_size: int = 50_000, enqueue_timeout: float = 0.25,
                 batch_size: int = 256, sinks: list[LogSink] | None = None, busy_timeout: float = 5.0) -> None:
        super().__init__(path)
        self._busy_timeout = busy_timeout
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=queue_size)
        self._enqueue_timeout = enqueue_timeout
        self._batch_size = batch_size
        self._sinks = sinks or []
        self._healthy = True
        self.last_error: str | None = None
        self.written = 0
        self._idle = threading.Condition()
        self._inflight = 0
        conn = self._connect()
        with conn:
            conn.executescript(_SCHEMA)
        conn.close()
        self._thread = threading.Thread(target=self._run, name="ztcp-decision-log", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only an OS crash can lose the last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @property
    def healthy(self) -> bool:
        return self._healthy and self._thread.is_alive()

    def submit(self, entry: dict) -> None:
        """Queue one entry; raise :class:`DecisionLogError` if it cannot be accepted."""
        if not self.healthy:
            raise DecisionLogError(f"decision log unavailable: {self.last_error or 'writer stopped'}")
        with self._idle:
            self._inflight += 1
        try:
            self._queue.put(entry, timeout=self._enqueue_timeout)
        except queue.Full:
            with self._idle:
                self._inflight -= 1
            raise DecisionLogError("decision log queue full (writer cannot keep up)") from None

    def _run(self) -> None:
        conn = self._connect()
        pending: list[dict] = []
        stopping = False
        while not (stopping and not pending):
            if not pending or self._healthy:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    item = ...
                if item is None:
                    stopping = True
                elif item is not ...:
                    pending.append(item)
                    while len(pending) < self._batch_size:
                        try:
                            nxt = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if nxt is None:
                            stopping = True
                            break
                        pending.append(nxt)
            if not pending:
                continue
            try:
                self._write(conn, pending)
            except sqlite3.Error as exc:
                self._healthy = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("decision log write failed, %d entries kept for retry: %s", len(pending),
                          self.last_error)
                time.sleep(0.5)
                if stopping:
                    break
                continue
            self._healthy = True
            self.last_error = None
            for sink in self._sinks:
                try:
                    sink.write(pending)
                except Exception as exc:  # a secondary sink must not stop the primary log
                    log.warning("decision log sink %s failed: %s", type(sink).__name__, exc)
            with self._idle:
                self._inflight -= len(pending)
                self.written += len(pending)
                self._idle.notify_all()
            pending = []
        conn.close()

    def _write(self, conn: sqlite3.Connection, entries: list[dict]) -> None:
        rows = []
        for e in entries:
            inp = e.get("input", {})
            rows.append((
                e["decision_id"], e["timestamp"], e["ts"], inp.get("subject", {}).get("id"),
                inp.get("resource", {}).get("citizen_ref"), e["result"]["effect"],
                e.get("bundles", {}).get("ztcp", {}).get("revision"), orjson.dumps(e),
            ))
        with conn:
            conn.executemany(
                "INSERT OR IGNORE INTO decisions (decision_id, timestamp, ts, subject_id, citizen_ref, effect,"
                " revision, entry) VALUES (?,?,?,?,?,?,?,?)", rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is stored. True when it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)


class ElasticsearchSink:
    """Copies entries to the ``ztcp-decisions`` data stream (official client, bulk helper)."""

    def __init__(self, client: Any, stream: str = "ztcp-decisions") -> None:
        self._client = client
        self._stream = stream

    def write(self, entries: list[dict]) -> None:
        from elasticsearch import helpers

        actions = ({"_op_type": "create", "_index": self._stream,
                    "_source": {**e, "@timestamp": e["timestamp"]}} for e in entries)
        helpers.bulk(self._client, actions, raise_on_error=True)
