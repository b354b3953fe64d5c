"""Storage plumbing shared by the decision point's stores: numbered migrations, PostgreSQL sessions.

Two stores sit under the decision point, each behind a small interface with two drivers:

* the **decision log** (:class:`pdp.decision_log.DecisionLogStore`): SQLite file
  ``ZTCP_HOME/decisions.db`` (:class:`pdp.sqlite_stores.SqliteDecisionStore`) or PostgreSQL
  (:class:`pdp.pg_stores.PostgresDecisionStore`);
* the **signal history** (:class:`pdp.signals.SignalStore`): ``ZTCP_HOME/signals.db``
  (:class:`pdp.sqlite_stores.SqliteSignalStore`) or PostgreSQL
  (:class:`pdp.pg_stores.PostgresSignalStore`), shared by every replica.

**Schema versions.** Each store names itself (a *component*) and keeps its version in one table,
``ztcp_schema(component, version, applied_at)``; a PostgreSQL database shared by several stores
has one row per component. Opening a store for writing applies the numbered migrations above the
stored version, each in the same transaction as the new version number, so a crash leaves the old
or the new schema, never half of one. A version higher than this code knows is refused
(:class:`pdp.errors.SchemaVersionError`): an older ztcp must not write to a layout it does not
understand. Files written before versioning have no ``ztcp_schema`` table: they are version 0, and
migration 1 is exactly the layout they already have (``IF NOT EXISTS``), so it adopts them.

**Ordered ids.** Readers follow both stores with a cursor (``id > cursor``): the SIEM reads the
decision log that way, and every replica tails the others' observations that way. On PostgreSQL a
sequence hands out ids at insert time but transactions commit in any order, so a reader could pass
an id whose transaction commits later and never see it. Every writer therefore takes a transaction-
scoped advisory lock (one per table) before inserting: ids are then assigned and committed in the
same order, and a row visible to a reader implies every smaller id is visible too. Writers batch
(hundreds of rows per transaction), so the lock is held for one short commit at a time. SQLite
serialises writers by itself.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pdp.errors import SchemaVersionError, StoreUnavailable

if TYPE_CHECKING:  # psycopg is imported only when a PostgreSQL store is opened
    import psycopg

SCHEMA_TABLE = "ztcp_schema"
T = TypeVar("T")

# pg_advisory_xact_lock keys ("ztcp" in the high bytes, then the purpose), constants so every
# replica and every version of ztcp agrees on them.
LOCK_MIGRATE = 0x7A746370_0000_0001
LOCK_DECISIONS = 0x7A746370_0000_0002
LOCK_OBSERVATIONS = 0x7A746370_0000_0003


@dataclass(frozen=True)
class Migration:
    """Schema version ``version``: the statements that take the previous version to it."""

    version: int
    description: str
    statements: tuple[str, ...]
    # Work SQL alone cannot do (chaining the existing rows of a log), run after the statements on
    # the same connection, in the same transaction.
    run: Callable[[Any], None] | None = None


def latest(migrations: Sequence[Migration]) -> int:
    versions = [m.version for m in migrations]
    assert versions == list(range(1, len(versions) + 1)), "migrations are numbered 1, 2, 3, …"
    return versions[-1]


def _too_new(component: str, found: int, known: int) -> SchemaVersionError:
    return SchemaVersionError(f"{component} store has schema version {found}; this ztcp knows up to {known} "
                              "(a newer ztcp wrote it): upgrade ztcp, never downgrade a store")


# -- SQLite -----------------------------------------------------------------------------------------

def sqlite_version(conn: sqlite3.Connection, component: str) -> int:
    """The stored schema version of ``component`` (0: written before versioning, or empty)."""
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                             (SCHEMA_TABLE,)).fetchone()
    if not has_table:
        return 0
    row = conn.execute(f"SELECT version FROM {SCHEMA_TABLE} WHERE component = ?", (component,)).fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def migrate_sqlite(conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> int:
    """Bring ``component`` to the newest version in one write transaction; return that version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): the transaction is ours.
    """
    known = latest(migrations)
    conn.execute("BEGIN IMMEDIATE")  # one migrating process at a time; others wait (busy timeout)
    try:
        current = sqlite_version(conn, component)
        if current > known:
            raise _too_new(component, current, known)
        if current < known:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (component TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
            for migration in migrations[current:]:
                for statement in migration.statements:
                    conn.execute(statement)
                if migration.run is not None:
                    migration.run(conn)
            conn.execute(f"INSERT INTO {SCHEMA_TABLE} VALUES (?, ?, datetime('now')) ON CONFLICT (component) "  # noqa: S608
                         "DO UPDATE SET version = excluded.version, applied_at = excluded.applied_at",
                         (component, known))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return known


def check_sqlite(conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> int:
    """For read-only handles: refuse a newer schema, migrate nothing."""
    found, known = sqlite_version(conn, component), latest(migrations)
    if found > known:
        raise _too_new(component, found, known)
    return found


# -- PostgreSQL -------------------------------------------------------------------------------------

def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).split(":", 1)[0] in ("postgresql", "postgres", "postgresql+psycopg")


def pg_conninfo(url: str) -> str:
    """A libpq connection string from ``postgresql://…`` (SQLAlchemy's ``postgresql+psycopg://`` too)."""
    if url.startswith("postgresql+psycopg://"):
        url = "postgresql://" + url.removeprefix("postgresql+psycopg://")
    return url


# Connection defaults, each overridable in the URL: a dead server or a cut network must surface as
# an error within seconds (the write-behind loops then retry and the decision point fails closed),
# not after TCP's default of minutes.
PG_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",  # ms: an unacknowledged write fails after 10 s
    "application_name": "ztcp-pdp",
}
# Session limits: a statement or a transaction left open by a stuck replica must not hold the
# ordering lock for long (the server ends such a session; its batch is retried by its writer).
PG_SESSION = "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=30000"


def pg_connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(pg_conninfo(url))
    params = {k: v for k, v in PG_DEFAULTS.items() if k not in given}
    if "options" not in given:
        params["options"] = PG_SESSION
    return psycopg.connect(make_conninfo(pg_conninfo(url), **params), autocommit=autocommit)


def pg_version(conn: psycopg.Connection, component: str) -> int:
    has_table = conn.execute("SELECT to_regclass(%s)", (SCHEMA_TABLE,)).fetchone()
    if not has_table or has_table[0] is None:
        return 0
    row = conn.execute(f"SELECT version FROM {SCHEMA_TABLE} WHERE component = %s", (component,)).fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def migrate_pg(conn: psycopg.Connection, component: str, migrations: Sequence[Migration]) -> int:
    """Like :func:`migrate_sqlite`; replicas starting together serialise on an advisory lock."""
    known = latest(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
        current = pg_version(conn, component)
        if current > known:
            raise _too_new(component, current, known)
        if current < known:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (component TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            for migration in migrations[current:]:
                for statement in migration.statements:
                    conn.execute(statement)
                if migration.run is not None:
                    migration.run(conn)
            conn.execute(f"INSERT INTO {SCHEMA_TABLE} (component, version) VALUES (%s, %s) "  # noqa: S608
                         "ON CONFLICT (component) DO UPDATE SET version = excluded.version, applied_at = now()",
                         (component, known))
    return known


def check_pg(conn: psycopg.Connection, component: str, migrations: Sequence[Migration]) -> int:
    found, known = pg_version(conn, component), latest(migrations)
    if found > known:
        raise _too_new(component, found, known)
    return found


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The driver error as :class:`StoreUnavailable`: its type and text (never the connection string)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return StoreUnavailable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class PgSession:
    """One PostgreSQL connection for one role (writer, reader, listener), made on first use and
    remade after it broke. Callers hold it through :meth:`use`, which serialises threads, turns
    any database error into :class:`StoreUnavailable` and drops a broken connection, so the next
    use reconnects: after an outage, the first call that finds the server back just works.
    """

    def __init__(self, url: str, *, autocommit: bool = False,
                 setup: Callable[[psycopg.Connection], None] | None = None) -> None:
        self._url = url
        self._autocommit = autocommit
        self._setup = setup
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self.connects = 0

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = pg_connect(self._url, autocommit=self._autocommit)
            try:
                if self._setup is not None:
                    self._setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self.connects += 1
        return self._conn

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection]:
        import psycopg

        with self._lock:
            try:
                yield self._connection()
            except psycopg.OperationalError as exc:
                self._drop()
                raise unavailable(exc) from exc
            except psycopg.Error as exc:
                self._drop_if_broken()
                raise unavailable(exc) from exc

    def run(self, fn: Callable[[psycopg.Connection], T], *, retry: bool = True) -> T:
        """``fn(conn)``, and once more on a fresh connection if an existing one turned out dead (it
        died while idle, e.g. across a server restart). Only for reads and idempotent writes."""
        import psycopg

        for attempt in (0, 1):
            with self._lock:
                had = self._conn is not None and not self._conn.closed
                try:
                    return fn(self._connection())
                except psycopg.OperationalError as exc:
                    self._drop()
                    if not (retry and had and attempt == 0):
                        raise unavailable(exc) from exc
                except psycopg.Error as exc:
                    self._drop_if_broken()
                    raise unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _drop_if_broken(self) -> None:
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            self._drop()
        elif conn is not None and not self._autocommit:
            try:
                conn.rollback()
            except Exception:  # a connection we cannot even roll back is useless: start afresh
                self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection may itself fail; it is gone
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()



# -- records both drivers write ----------------------------------------------------------------------

def decision_row(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """The indexed columns of a decision-log entry, then the entry itself (orjson bytes)."""
    import orjson

    inp = entry.get("input", {})
    return (entry["decision_id"], entry["timestamp"], entry["ts"], (inp.get("subject") or {}).get("id"),
            (inp.get("resource") or {}).get("citizen_ref"), entry["result"]["effect"],
            ((entry.get("bundles") or {}).get("ztcp") or {}).get("revision"), orjson.dumps(entry))


# An observation of one decision, as the signal history keeps it in memory and every driver stores it:
# (ts, subject, device, citizen_ref, dataset, lat, lon, effect, resource_key). A tuple: one per decision.
OBSERVATION_COLUMNS = ("ts", "subject", "device", "citizen_ref", "dataset", "lat", "lon", "effect", "resource_key")
