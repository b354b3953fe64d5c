"""The PostgreSQL driver of the alert store (``ZTCP_DATABASE_URL``): one set of alerts, one history
chain and the rules' watermarks for every replica.

psycopg 3 with a small connection pool: the console's request threads, the scheduler and delivery
each borrow a connection per operation. Tables are those of the SQLite driver (``siem_alerts``,
``siem_alert_evidence``, ``siem_alert_history``, ``siem_alert_chain``) plus ``siem_watermarks``;
the schema version is kept in ``ztcp_schema`` under the component ``siem_alerts`` (numbered
migrations, applied at open under an advisory lock, like the other stores). Every write
transaction locks the chain's head row (``SELECT … FOR UPDATE``) before appending to the history, so
the history of writers on different replicas is one chain in ``seq`` order, and a reader following
``seq`` never passes a row that commits later.

Any database failure surfaces as :class:`siem_rules.errors.AlertStoreUnavailable` (its type and
first line, never the connection string); the next call reconnects.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from contracts.log_chain import GENESIS

from .alert_backend import ChainedAlertStore, Watermark
from .errors import AlertStoreUnavailable

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

COMPONENT = "siem_alerts"
LOCK_MIGRATE = 0x7A746370_0000_0001  # the advisory-lock key every ztcp store migrates under
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: alerts, evidence, chained history, its head, watermarks
        """CREATE TABLE siem_alerts (
            alert_id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, rule_name TEXT NOT NULL, rule_title TEXT NOT NULL,
            rule_type TEXT NOT NULL, level TEXT NOT NULL, group_json TEXT NOT NULL, group_hash TEXT NOT NULL,
            window_start DOUBLE PRECISION NOT NULL, window_end DOUBLE PRECISION NOT NULL,
            first_ts DOUBLE PRECISION NOT NULL, last_ts DOUBLE PRECISION NOT NULL, metric DOUBLE PRECISION,
            status TEXT NOT NULL DEFAULT 'open', created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            explanation TEXT, subjects TEXT)""",
        "CREATE INDEX siem_alerts_dedup ON siem_alerts (rule_id, group_hash, last_ts)",
        "CREATE INDEX siem_alerts_status ON siem_alerts (status, last_ts)",
        """CREATE TABLE siem_alert_evidence (
            alert_id TEXT NOT NULL, event_id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (alert_id, event_id))""",
        "CREATE INDEX siem_alert_evidence_event ON siem_alert_evidence (event_id)",
        """CREATE TABLE siem_alert_history (
            seq BIGINT PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, time TEXT NOT NULL, type TEXT NOT NULL,
            actor TEXT NOT NULL, alert_id TEXT NOT NULL, rule_id TEXT NOT NULL, level TEXT NOT NULL,
            from_status TEXT, to_status TEXT, self_review INTEGER NOT NULL, comment TEXT, detail TEXT,
            link BYTEA NOT NULL)""",
        "CREATE INDEX siem_alert_history_alert ON siem_alert_history (alert_id, seq)",
        """CREATE TABLE siem_alert_chain (
            id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, link BYTEA NOT NULL,
            prune_seq BIGINT NOT NULL, prune_link BYTEA NOT NULL)""",
        """CREATE TABLE siem_watermarks (
            rule_id TEXT NOT NULL, kind TEXT NOT NULL, rid BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL,
            instance TEXT NOT NULL, PRIMARY KEY (rule_id, kind))""",
        # Alert history seq through which the leader's delivery has sent every notification.
        "CREATE TABLE siem_delivery_mark (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL)",
    ),
)


def _unavailable(exc: BaseException) -> AlertStoreUnavailable:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return AlertStoreUnavailable(f"alert store unavailable: {type(exc).__name__}" + (f": {text}" if text else ""))


class PostgresAlertStore(ChainedAlertStore):
    """Alerts in PostgreSQL, shared by every replica. ``conninfo``: a libpq URL or DSN; ``params``:
    connection parameters (timeouts, keepalives) given to every pooled connection."""

    shared = True
    _HEAD = "SELECT seq, link, prune_seq, prune_link FROM siem_alert_chain WHERE id = 1 FOR UPDATE"
    _READ_HEAD = "SELECT seq, link, prune_seq, prune_link FROM siem_alert_chain WHERE id = 1"

    def __init__(self, conninfo: str, *, evidence_cap: int = 500, max_size: int = 4, timeout: float = 5.0,
                 params: dict[str, str] | None = None) -> None:
        from psycopg_pool import ConnectionPool

        self.evidence_cap = evidence_cap
        self.timeout = timeout
        self._local = threading.local()
        self.pool: ConnectionPool = ConnectionPool(conninfo, kwargs=dict(params or {}), min_size=0, max_size=max_size,
                                                   timeout=timeout, open=True, name="ztcp-alerts")
        self._call(self._migrate)

    def __repr__(self) -> str:
        return "PostgresAlertStore(<ZTCP_DATABASE_URL>)"

    # ---- schema ----

    @staticmethod
    def _migrate(conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
            conn.execute("CREATE TABLE IF NOT EXISTS ztcp_schema (component TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            row = conn.execute("SELECT version FROM ztcp_schema WHERE component = %s", (COMPONENT,)).fetchone()
            current, known = (int(row[0]) if row else 0), len(MIGRATIONS)
            if current > known:
                raise AlertStoreUnavailable(
                    f"{COMPONENT} store has schema version {current}; this ztcp knows up to {known} "
                    "(a newer ztcp wrote it): upgrade ztcp, never downgrade a store")
            for statements in MIGRATIONS[current:]:
                for statement in statements:
                    conn.execute(statement)
            if current == 0:
                conn.execute("INSERT INTO siem_alert_chain VALUES (1, 0, %s, 0, %s)", (GENESIS, GENESIS))
            if current < known:
                conn.execute("INSERT INTO ztcp_schema (component, version) VALUES (%s, %s) ON CONFLICT (component) "
                             "DO UPDATE SET version = excluded.version, applied_at = now()", (COMPONENT, known))

    # ---- connections ----

    def _call(self, fn: Any) -> Any:  # noqa: ANN401
        """``fn(conn)`` on a pooled connection, committed; failures as AlertStoreUnavailable."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection() as conn:
                return fn(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable(exc) from exc

    def _cur(self) -> psycopg.Connection | None:
        return getattr(self._local, "conn", None)

    @contextlib.contextmanager
    def _bound(self, *, readonly: bool) -> Iterator[None]:
        """Bind one pooled connection to this thread for the block (re-entrant), in one transaction."""
        if self._cur() is not None:
            yield
            return
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection() as conn:
                if readonly:
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                self._local.conn, self._local.readonly = conn, readonly
                try:
                    yield
                finally:
                    self._local.conn = None
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable(exc) from exc

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._bound(readonly=False)

    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        return self._bound(readonly=True)

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def _run(self, fn: Any) -> Any:  # noqa: ANN401
        conn = self._cur()
        if conn is not None:
            return fn(conn)
        return self._call(fn)

    def _q(self, sql: str, args: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(self._sql(sql), tuple(args)).fetchall())

    def _x(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._run(lambda conn: conn.execute(self._sql(sql), tuple(args)).rowcount)

    def _xm(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0

        def many(conn: psycopg.Connection) -> int:
            with conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
                return cur.rowcount

        return self._run(many)

    def _head(self) -> tuple[int, bytes, int, bytes]:
        if self._cur() is not None and getattr(self._local, "readonly", False):
            rows = self._q(self._READ_HEAD)  # a snapshot cannot lock; it reads the head it sees
            seq, head, prune_seq, prune_link = rows[0]
            return int(seq), bytes(head), int(prune_seq), bytes(prune_link)
        return super()._head()

    def close(self) -> None:
        self.pool.close()

    # ---- people (self-review on a replica without the evidence events) ----

    def subjects(self, alert_id: str) -> set[str]:
        rows = self._q("SELECT subjects FROM siem_alerts WHERE alert_id = ?", (alert_id,))
        return set(json.loads(rows[0][0])) if rows and rows[0][0] else set()

    def _add_subjects(self, alert_id: str, names: set[str]) -> None:
        merged = self.subjects(alert_id) | {str(n) for n in names}
        self._x("UPDATE siem_alerts SET subjects = ? WHERE alert_id = ?", (json.dumps(sorted(merged)), alert_id))

    # ---- delivery progress ----

    def delivery_mark(self) -> int | None:
        rows = self._q("SELECT seq FROM siem_delivery_mark WHERE id = 1")
        return int(rows[0][0]) if rows else None

    def set_delivery_mark(self, seq: int) -> None:
        """Only forward: a replica with an older view (it just took over) cannot move it back."""
        self._x("INSERT INTO siem_delivery_mark VALUES (1, ?) ON CONFLICT (id) DO UPDATE "
                "SET seq = GREATEST(siem_delivery_mark.seq, excluded.seq)", (seq,))

    # ---- watermarks ----

    def watermark(self, rule_id: str, kind: str) -> Watermark | None:
        rows = self._q("SELECT rid, ts, instance FROM siem_watermarks WHERE rule_id = ? AND kind = ?", (rule_id, kind))
        return Watermark(int(rows[0][0]), float(rows[0][1]), rows[0][2]) if rows else None

    def save_watermarks(self, rule_id: str, marks: dict[str, Watermark]) -> None:
        """In the caller's transaction (with the rule's alerts). The time only moves forward; the
        ``rid`` is the writing instance's own."""
        self._xm("INSERT INTO siem_watermarks (rule_id, kind, rid, ts, instance) VALUES (?,?,?,?,?) "
                 "ON CONFLICT (rule_id, kind) DO UPDATE SET rid = excluded.rid, instance = excluded.instance, "
                 "ts = GREATEST(siem_watermarks.ts, excluded.ts)",
                 [(rule_id, kind, m.rid, m.ts, m.instance) for kind, m in sorted(marks.items())])
