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
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pdp.errors import DecisionLogError, StoreUnavailable

log = logging.getLogger("ztcp.pdp.decision_log")


class DecisionLogStore(Protocol):
    """What a decision-log driver does: :class:`pdp.sqlite_stores.SqliteDecisionStore` (the file
    ``ZTCP_HOME/decisions.db``) or :class:`pdp.pg_stores.PostgresDecisionStore` (shared by replicas).
    ``tests/pdp/test_store_conformance.py`` is the contract both pass. Every method raises
    :class:`pdp.errors.StoreUnavailable` on a database error.
    """

    path: Path | None  # the file, for a file-based driver
    batch_interval: float  # the writer's pause after each commit (0: none)

    def write(self, entries: Sequence[dict]) -> None:
        """Durably store a batch, in one transaction. Idempotent by ``decision_id`` (a retried batch
        adds nothing), and ``seq`` is assigned in commit order, so a cursor never skips an entry."""
        ...

    def get(self, decision_id: str) -> dict | None: ...

    def entries(self, *, since: float | None = None, last: int | None = None) -> list[dict]: ...

    def iter_since(self, cursor: int = 0, limit: int = 10_000) -> tuple[list[dict], int]: ...

    def cursor(self) -> int:
        """The ``seq`` of the newest entry (0 when empty): ``iter_since(cursor())`` is what comes next."""
        ...

    def count(self) -> int: ...

    def count_after(self, seq: int) -> int:
        """How many entries follow ``seq``."""
        ...

    def counts_by_effect(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class LogSink(Protocol):
    """A secondary destination (Elasticsearch data stream); failures there are retried, not fatal."""

    def write(self, entries: list[dict]) -> None: ...


def open_store(source: Path | str | DecisionLogStore, *, readonly: bool = False,
               busy_timeout: float = 5.0) -> DecisionLogStore:
    """A store from a SQLite path, a ``postgresql://`` URL, or a store as it is."""
    from pdp.storage import is_postgres_url

    if isinstance(source, Path) or (isinstance(source, str) and not is_postgres_url(source)):
        from pdp.sqlite_stores import SqliteDecisionStore

        return SqliteDecisionStore(Path(source), readonly=readonly, busy_timeout=busy_timeout)
    if isinstance(source, str):
        from pdp.pg_stores import PostgresDecisionStore

        return PostgresDecisionStore(source, readonly=readonly)
    return source


class DecisionLogReader:
    """Read access to a decision log (auditors, simulation, the SIEM feed), whatever its driver."""

    def __init__(self, source: Path | str | DecisionLogStore) -> None:
        self.store = open_store(source, readonly=True)

    @property
    def path(self) -> Path | None:
        return self.store.path

    def get(self, decision_id: str) -> dict | None:
        return self.store.get(decision_id)

    def entries(self, *, since: float | None = None, last: int | None = None) -> list[dict]:
        """Entries in decision order: those at or after ``since`` (epoch seconds), or the ``last`` N."""
        return self.store.entries(since=since, last=last)

    def iter_since(self, cursor: int = 0, limit: int = 10_000) -> tuple[list[dict], int]:
        """Entries after ``cursor`` (a sequence number) and the new cursor."""
        return self.store.iter_since(cursor, limit)

    def cursor(self) -> int:
        return self.store.cursor()

    def events_after(self, cursor: str | int | None, limit: int = 50_000) -> tuple[list[dict], int | None]:
        """The SIEM feed: ``siem_rules.CallableSource("decisions", "decision", log.events_after)``."""
        start = int(cursor) if cursor not in (None, "") else 0
        entries, new_cursor = self.iter_since(start, limit)
        return entries, (new_cursor if entries else (start or None))

    def last_seq(self) -> int:
        """The newest entry's sequence number (0 when empty): where a new feed that wants only what
        comes next (syslog forwarding) starts."""
        return self.store.cursor()

    def count_after(self, seq: int) -> int:
        """How many entries follow ``seq`` (a feed's backlog)."""
        return self.store.count_after(seq)

    def count(self) -> int:
        return self.store.count()

    def counts_by_effect(self) -> dict[str, Any]:
        return self.store.counts_by_effect()

    def close(self) -> None:
        self.store.close()


class DecisionLog(DecisionLogReader):
    """The writer (one per process) plus everything the reader offers, over any driver."""

    @staticmethod
    def reader(source: Path | str | DecisionLogStore) -> DecisionLogReader:
        return DecisionLogReader(source)

    def __init__(self, store: Path | str | DecisionLogStore, *, queue_size: int = 50_000,
                 enqueue_timeout: float = 0.25, batch_size: int = 256, sinks: list[LogSink] | None = None,
                 busy_timeout: float = 5.0) -> None:
        """``store``: a driver, or a SQLite path (``busy_timeout`` applies to it), or a ``postgresql://`` URL."""
        self.store = open_store(store, busy_timeout=busy_timeout)
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=queue_size)
        self._enqueue_timeout = enqueue_timeout
        self._batch_size = batch_size
        self._sinks = sinks or []
        self._healthy = True
        self.last_error: str | None = None
        self.written = 0
        # A server database costs a round trip and several statements per commit, whatever the batch
        # size: pausing between commits lets a batch gather under load (SQLite: no pause, as ever).
        self._pace = float(getattr(self.store, "batch_interval", 0.0))
        self._idle = threading.Condition()
        self._inflight = 0
        self._thread = threading.Thread(target=self._run, name="ztcp-decision-log", daemon=True)
        self._thread.start()

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
                self.store.write(pending)
            except StoreUnavailable as exc:
                self._healthy = False
                self.last_error = str(exc)
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
            if self._pace and not stopping:
                time.sleep(self._pace)  # let the next batch gather (see batch_interval)

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
        self.store.close()


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
