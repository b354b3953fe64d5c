"""One replica runs the periodic jobs: a leader lease on the shared database.

With ``ZTCP_DATABASE_URL`` several ``ztcp serve`` replicas share one database, and the jobs that run
on a timer — the SIEM scheduler's tick (ingest + rule pack), alert delivery, the exchange's sweep of
overdue receipts — must run once per tick for the cluster, not once per replica. The lease is the
pattern of the ledger's integrator (``provenance/postgres_store.py``, after Trillian's log signer):

* **Holding it** is holding a session-level advisory lock (``pg_try_advisory_lock``) on a session of
  its own. Every replica is a candidate; a standby tries the lock every ``poll`` seconds.
* **Death frees it.** A leader killed with ``kill -9`` loses its TCP connection; the server ends the
  session and the lock is free at once, so a standby takes it on its next try (≤ ``poll`` s).
* **A hung or cut-off leader is fenced by time.** The leader's session runs a statement every
  ``poll`` seconds and has ``idle_session_timeout`` = ``session_timeout``: a leader that stops
  talking loses its session (and the lock) on the server after ``session_timeout`` s. On its own side
  the leader counts as leader only while its last successful probe is younger than ``grace``
  (< ``session_timeout``), so it stops starting jobs *before* the server can hand the lock to
  someone else: two replicas never both believe they lead. A standby takes over within
  ``session_timeout + poll`` s (6 s by default) in that case, within ``poll`` s after a kill.

A job asks :meth:`LeaderLease.held` before each tick and skips the tick when it is not the leader.
Without ``ZTCP_DATABASE_URL`` there is one process and :data:`ALWAYS` is the lease: always held.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("ztcp.leader")

# pdp.storage's advisory-lock key space ("ztcp" in the high bytes, then the purpose).
LEASE_KEYS = {"scheduler": 0x7A746370_0000_0020}


@dataclass(frozen=True)
class _Always:
    """The lease of a single process (SQLite, no replicas): always held."""

    role: str = "scheduler"

    def held(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"role": "leader", "lease": "single process"}

    def start(self) -> _Always:
        return self

    def stop(self) -> None:
        return None


ALWAYS = _Always()


class LeaderLease:
    """This replica's candidacy for one role (``scheduler``); :meth:`held` says whether it leads now."""

    def __init__(self, url: str, role: str = "scheduler", *, poll: float = 1.0, session_timeout: float = 5.0) -> None:
        self.url = url
        self.role = role
        self.key = LEASE_KEYS[role]
        self.poll = poll
        self.session_timeout = session_timeout
        # Stop counting as leader well before the server can end a silent session and free the lock.
        self.grace = max(poll, session_timeout - 2 * poll)
        self.leader = False
        self.since: float | None = None  # time.time() when this replica became the leader
        self.error: str | None = None
        self.changes = 0  # how often leadership was won or lost here (for tests and /readyz)
        self._last_ok = float("-inf")
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LeaderLease({self.role!r}, <ZTCP_DATABASE_URL>)"

    def start(self) -> LeaderLease:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"ztcp-lease-{self.role}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop being a candidate and give the lease up (closing the session frees the lock at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            self._resign()

    def held(self) -> bool:
        """Leader now, proven by a probe younger than ``grace`` seconds."""
        return self.leader and time.monotonic() - self._last_ok < self.grace

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "leader" if self.held() else "standby", "since": self.since}
        if self.error:
            out["error"] = self.error.split(":", 1)[0]  # the type only: a message could name the host
        return out

    def try_once(self) -> bool:
        """One round of the loop (try or probe); for the loop and for tests."""
        with self._lock:
            try:
                conn = self._connection()
                if self.leader:
                    conn.execute("SELECT 1")
                else:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                    if row is not None and row[0]:
                        self.leader, self.since = True, time.time()
                        self.changes += 1
                        log.info("this replica leads %s now", self.role)
                self._last_ok = time.monotonic()
                self.error = None
            except Exception as exc:  # noqa: BLE001 - any failure: not the leader until proven again
                self.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                self._resign()
            return self.leader

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            from pdp.storage import pg_connect

            conn = pg_connect(self.url, autocommit=True)
            ms = max(1000, int(self.session_timeout * 1000))
            conn.execute(f"SET idle_session_timeout = {ms}")
            conn.execute("SET application_name = 'ztcp-lease'")
            self._conn = conn
        return self._conn

    def _resign(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a dead session may fail to close; it is gone either way
                conn.close()
        if self.leader:
            self.changes += 1
            log.warning("this replica no longer leads %s", self.role)
        self.leader, self.since = False, None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.try_once()
            self._stop.wait(self.poll)


def lease_for(settings: Any) -> LeaderLease | _Always:  # noqa: ANN401 - server.settings.Settings
    """The scheduler lease of this process: on the database with ``ZTCP_DATABASE_URL``, else always held."""
    if getattr(settings, "database_url", None):
        return LeaderLease(settings.database_url)
    return ALWAYS
