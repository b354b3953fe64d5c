"""The PostgreSQL driver of the ledger store: many writers (processes, replicas), one sequence.

Layout (schema version 2, numbered migrations in ``pg_schema/``, applied at ``open`` and recorded in
``schema_migrations``), all in one PostgreSQL schema (``ztcp_ledger`` unless told otherwise):

* ``entries``, ``nodes``, ``upper_nodes``, ``checkpoints``, ``meta``: as in the SQLite driver
  (``seq`` the leaf index, ``body`` the RFC 8785 bytes, tree nodes keyed by ``store.node_id``, the
  bottom six levels apart from the rest);
* ``citizens(segment, citizen_key, seq)``: the citizen index, led by the segment ``seq >> 18``,
  written by whoever extends the tree (not by the writers: an index on ``entries`` would be
  maintained inside the section every writer queues for, at a random place per event);
* ``sequencer(next_seq)``: the sequencer's row. A writer locks it (``SELECT … FOR UPDATE``), works
  out which event ids are new, writes their entries at ``next_seq…``, moves it, and commits; the
  COMMIT returns once PostgreSQL has flushed it (``synchronous_commit = on`` is set on every session,
  whatever the server's default), and only then is anything acknowledged;
* ``tree(size)``: entries ``[0, size)`` have their tree nodes. Whoever extends the tree holds this
  row's lock, reads the entries after ``size``, asks the ledger's ``integrate`` for the nodes (and a
  checkpoint when one is due) and writes them, the citizen index rows and the new size in one
  transaction.

Two ways to run (``integration=``):

* ``"background"`` (the default, and what ``ztcp`` runs): writers only sequence. One integrator,
  the holder of a session-level advisory lock on the database, extends the tree behind them, polling
  every ``integrator_poll`` seconds (and woken at once by appends made in its own process). Every
  process that asked for it (``start_integrator``; ``ztcp serve`` does) is a candidate: standbys try
  the lock every ``standby_poll`` seconds. The lock belongs to the integrator's own session and its
  transactions run on that session, so they are fenced by it: an integrator that dies (kill -9,
  crash, lost network) loses the session, its open transaction is rolled back and the lock is free;
  one that hangs is cut off by ``idle_session_timeout`` / ``idle_in_transaction_session_timeout``
  (``session_timeout``, 5 s), after which a standby takes over on its next try. The integrator's
  commits do not wait for the disk (``synchronous_commit = off`` on its session): everything it
  writes is a function of entries that are already durable, in their order, so a commit lost in a
  server crash is recomputed identically by the next integration (the same nodes, the same root;
  a checkpoint note is deterministic for its size), and the writers' flushes never queue behind it. Readers of the tree
  (``size``, scans, proofs, citizen lookups, ``get``) see ``[0, tree.size)`` only; an event is
  found by id (``by_event_ids``) as soon as it is acknowledged. ``integrate_pending`` integrates
  everything acknowledged so far (becoming the integrator if nobody is, else waiting for it): what a
  checkpoint or a trace calls first.
* ``"inline"``: every append also integrates, in its own transaction, under both locks (Tessera's
  MySQL driver): the contract of ``store.LedgerStore`` exactly, at the price of the tree work inside
  the section every writer of every replica waits for. The conformance suite runs this way; the
  benchmark measures both.

Integrated entries and their nodes are never changed again and the tree size only grows, so a
reader needs no long transaction for a consistent view: ``scan`` and ``scan_nodes`` are paged by
key, bounded by the tree size the first of them saw in this thread (verify reads both at once), and
include any row planted beyond what the sequencer ever handed out, for the verifier to find.

Connections come from a psycopg pool (checked on checkout, so a server restart costs the next
caller a reconnect, not an error); when PostgreSQL cannot be reached, writes raise
``LedgerUnavailable`` after ``timeout`` seconds and callers fail closed; they succeed again on their
own once it is back. The URL's password never appears in a message (``location`` is the URL
without it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from provenance import merkle
from provenance.errors import LedgerUnavailable, ProvenanceError, SchemaVersionError
from provenance.sqlite_store import SqliteLedgerStore
from provenance.store import (
    LOWER_LEVELS,
    Appended,
    CheckpointRow,
    Integrate,
    Integration,
    Prepared,
    Receipt,
    StoredEntry,
    assign_seqs,
    node_id,
)

log = logging.getLogger(__name__)

# (number, name) of every migration this ztcp knows, in order; the SQL is pg_schema/NNNN_name.sql.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, "ledger"), (2, "sequencer"))
SCHEMA_VERSION = MIGRATIONS[-1][0]
SEGMENT_BITS = 18  # citizen-index partition, as in the SQLite driver (the literal 18 is in the SQL)
UPPER_LEVEL = LOWER_LEVELS  # the first level stored in upper_nodes

_PAGE = 10_000  # rows per page of a scan
_ONE_STATEMENT = 64  # batches up to this size are appended in one statement (one round trip)
_IN_CHUNK = 10_000  # values per = ANY(array) lookup
_ENTRY_COLUMNS = "seq, event_id, leaf_hash, body"
_ENTRY_TYPES = ("int8", "text", "int8", "int8", "text", "bytea", "bytea")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")  # formatted into SQL: nothing that needs quoting
_LOW = -(2**63)
_MAKE = tuple.__new__  # NamedTuple's own __new__ is a Python function: too slow per row


def redact_dsn(dsn: str) -> str:
    """A PostgreSQL URL or key=value DSN as messages may show it: user, host, port and database,
    never the password (wherever it was given) nor other parameters."""
    try:
        params = conninfo_to_dict(dsn)
    except (psycopg.Error, ValueError, TypeError):
        return "postgresql://(unparsable URL)"
    user = params.get("user")
    port = params.get("port")
    return (f"postgresql://{f'{user}@' if user else ''}{params.get('host', '')}{f':{port}' if port else ''}"
            f"/{params.get('dbname', '')}")


def _key(label: str) -> int:
    """A stable 64-bit advisory-lock key for one purpose on one schema."""
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "big", signed=True)


def _row(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, ``SHOW``, a lock function)."""
    if row is None:
        raise TypeError("the query returned no row")
    return row


def _migration_sql(number: int, name: str) -> str:
    return (resources.files("provenance") / "pg_schema" / f"{number:04d}_{name}.sql").read_text(encoding="utf-8")


class _View:
    """The transaction's cursor, as the integrator may read it (under the tree row's lock)."""

    __slots__ = ("_cur", "_store", "size")

    def __init__(self, store: PostgresLedgerStore, cur: psycopg.Cursor, size: int) -> None:
        self._store = store
        self._cur = cur
        self.size = size

    def node_hashes(self, ids: Collection[int]) -> dict[int, bytes]:
        return self._store._node_hashes(self._cur, ids)

    def latest_checkpoint(self) -> CheckpointRow | None:
        return self._store._latest_checkpoint(self._cur)


class PostgresLedgerStore:
    """A :class:`provenance.store.LedgerStore` on PostgreSQL; see the module notes.

    Creating the object touches nothing; ``open`` connects, migrates and checks the origin, and
    ``backup_to`` works without it. ``timeout`` bounds how long a caller waits for a connection (and
    libpq for a connect) before ``LedgerUnavailable``.
    """

    SCHEMA_VERSION = SCHEMA_VERSION
    read_errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def __init__(
        self,
        url: str,
        *,
        schema: str = "ztcp_ledger",
        integration: str = "background",
        pool_size: int = 8,
        timeout: float = 5.0,
        integrator_poll: float = 0.05,
        standby_poll: float = 1.0,
        session_timeout: float = 5.0,
        integrate_batch: int = 10_000,
    ) -> None:
        if integration not in ("background", "inline"):
            raise ValueError("integration is 'background' or 'inline'")
        if not _SCHEMA_NAME.match(schema):
            raise ValueError("the ledger's PostgreSQL schema must be a lower-case SQL identifier")
        self.url = url
        self.schema = schema
        self.integration = integration
        self.integrates_in_background = integration == "background"
        self.location = f"{redact_dsn(url)} (schema {schema})"
        try:
            params = conninfo_to_dict(url)
        except (psycopg.Error, ValueError, TypeError):
            raise ValueError(f"not a PostgreSQL URL: {redact_dsn(url)}") from None
        password = params.get("password")
        self._password = str(password) if password else None
        # Defaults only where the URL says nothing: a dead server or network is noticed in seconds.
        for k, v in (("connect_timeout", str(max(1, round(timeout)))), ("keepalives", "1"),
                     ("keepalives_idle", "5"), ("keepalives_interval", "2"), ("keepalives_count", "3"),
                     ("application_name", "ztcp-ledger")):
            params.setdefault(k, v)
        self._conninfo = make_conninfo("", **params)
        self.pool_size = pool_size
        self.timeout = timeout
        self.integrator_poll = integrator_poll
        self.standby_poll = standby_poll
        self.session_timeout = session_timeout
        self.integrate_batch = integrate_batch
        self._lock_key = _key(f"ztcp-ledger-integrator:{schema}")
        self._migrate_key = _key(f"ztcp-ledger-migrate:{schema}")
        self._pool: ConnectionPool | None = None
        self._closed = False
        self._guard = threading.Lock()  # the pool's creation and closing
        self._local = threading.local()  # the scan bound pinned in this thread (see scan)
        self._integrator: _Integrator | None = None
        self.fsync_off = False  # the server does not flush commits to disk (a warning at open)
        s = schema
        self._q = {
            "seq_lock": f"SELECT next_seq FROM {s}.sequencer WHERE id = 1 FOR UPDATE",
            "seq_set": f"UPDATE {s}.sequencer SET next_seq = %s WHERE id = 1",
            "next_seq": f"SELECT next_seq FROM {s}.sequencer WHERE id = 1",
            "tree_lock": f"SELECT size FROM {s}.tree WHERE id = 1 FOR UPDATE",
            "tree_set": f"UPDATE {s}.tree SET size = %s WHERE id = 1",
            "size": f"SELECT size FROM {s}.tree WHERE id = 1",
            "pending": f"SELECT t.size, q.next_seq FROM {s}.tree t, {s}.sequencer q WHERE t.id = 1 AND q.id = 1",
            # Data-modifying CTEs run once each, to completion, in one statement: the lock, the rows
            # and the new next_seq commit together. Under READ COMMITTED a writer that waited for the
            # lock sees the row as its holder committed it (PostgreSQL re-reads a locked row).
            "append_small": f"WITH s AS (SELECT next_seq FROM {s}.sequencer WHERE id = 1 FOR UPDATE), "
                            f"ins AS (INSERT INTO {s}.entries (seq, event_id, citizen_key, time_us, type, body, "
                            "leaf_hash) SELECT s.next_seq + u.ord - 1, u.eid, u.ck, u.tu, u.ty, u.body, u.lh FROM s, "
                            "unnest(%s::text[], %s::int8[], %s::int8[], %s::text[], %s::bytea[], %s::bytea[]) "
                            "WITH ORDINALITY AS u(eid, ck, tu, ty, body, lh, ord)), "
                            f"upd AS (UPDATE {s}.sequencer q SET next_seq = s.next_seq + %s FROM s WHERE q.id = 1) "
                            "SELECT next_seq FROM s",
            "copy_entries": f"COPY {s}.entries (seq, event_id, citizen_key, time_us, type, body, leaf_hash) "
                            "FROM STDIN (FORMAT BINARY)",
            "copy_nodes": "COPY {}.{} (id, hash) FROM STDIN (FORMAT BINARY)",
            "lookup": f"SELECT event_id, seq, leaf_hash FROM {s}.entries WHERE event_id = ANY(%s::text[])",
            "read_full": f"SELECT seq, event_id, citizen_key, time_us, type, body, leaf_hash FROM {s}.entries "
                         "WHERE seq >= %s AND seq < %s ORDER BY seq",
            "read_hashes": f"SELECT seq, event_id, citizen_key, leaf_hash FROM {s}.entries "
                           "WHERE seq >= %s AND seq < %s ORDER BY seq",
            "copy_citizens": f"COPY {s}.citizens (segment, citizen_key, seq) FROM STDIN (FORMAT BINARY)",
            "checkpoint": f"INSERT INTO {s}.checkpoints VALUES (%s, %s, %s, %s) ON CONFLICT (size) DO NOTHING",
            "latest_cp": f"SELECT size, root, time_us, note FROM {s}.checkpoints ORDER BY size DESC LIMIT 1",
        }

    def __repr__(self) -> str:
        return f"PostgresLedgerStore({self.location!r}, integration={self.integration!r})"

    # -- connections -------------------------------------------------------------------------------

    def _reason(self, exc: BaseException) -> str:
        """An exception as a message may carry it: its type and first line, never the password."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if self._password:
            text = text.replace(self._password, "***")
        return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__

    def _connect(self, **kw: Any) -> psycopg.Connection:  # noqa: ANN401 - psycopg's own keyword arguments
        """A connection of our own (not pooled): the integrator's session, backups."""
        conn = psycopg.connect(self._conninfo, autocommit=True, **kw)
        conn.execute("SET synchronous_commit = on")
        return conn

    @staticmethod
    def _configure(conn: psycopg.Connection) -> None:
        # Durable before acknowledged, whatever the database's or role's default says.
        conn.execute("SET synchronous_commit = on")

    def _live_pool(self) -> ConnectionPool:
        if self._closed:
            raise LedgerUnavailable("ledger is closed")
        if self._pool is None:
            raise LedgerUnavailable(f"ledger store {self.location} is not open")
        return self._pool

    @contextlib.contextmanager
    def _conn(self, doing: str) -> Iterator[psycopg.Connection]:
        """A pooled connection. Unreachable (no connection in time, or it broke) is ``LedgerUnavailable``."""
        pool = self._live_pool()
        try:
            with pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout:
            raise LedgerUnavailable(
                f"ledger {doing}: {self.location} is unreachable (no connection within {self.timeout:g} s)"
            ) from None
        except psycopg.OperationalError as exc:
            raise LedgerUnavailable(f"ledger {doing}: {self.location}: {self._reason(exc)}") from None

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self, origin: str, verifier_key: str) -> None:
        with self._guard:
            if self._closed:
                raise LedgerUnavailable("ledger is closed")
            if self._pool is None:
                pool = ConnectionPool(
                    self._conninfo, min_size=1, max_size=self.pool_size, open=False, timeout=self.timeout,
                    kwargs={"autocommit": True}, configure=self._configure, check=ConnectionPool.check_connection,
                    name=f"ztcp-ledger-{self.schema}",
                    # The pool retries a lost connection with exponential backoff (1, 2, 4 … s); past
                    # this it gives up and the next caller starts a fresh attempt at once. Kept short,
                    # so appends resume within ~2 s of the server's return, not after the backoff.
                    reconnect_timeout=self.timeout,
                )
                try:
                    pool.open(wait=True, timeout=self.timeout)
                except PoolTimeout:
                    pool.close()
                    raise LedgerUnavailable(
                        f"cannot open ledger {self.location}: no connection within {self.timeout:g} s"
                    ) from None
                self._pool = pool
        try:
            with self._conn("open failed") as conn:
                self._migrate(conn, origin, verifier_key)
                self.fsync_off = _row(conn.execute("SHOW fsync").fetchone())[0] == "off"
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"cannot open ledger {self.location}: {self._reason(exc)}") from None
        if self.fsync_off:
            log.warning("ledger %s: the server runs with fsync=off; commits are not durable across a "
                        "machine crash", self.location)

    def _recorded_version(self, rows: Sequence[tuple[int, str]]) -> int:
        """The version the ``schema_migrations`` rows describe; refuses newer or unknown histories."""
        if rows and max(n for n, _ in rows) > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"ledger {self.location} has schema version {max(n for n, _ in rows)}, newer than this ztcp "
                f"understands (up to {SCHEMA_VERSION}): upgrade ztcp to open it"
            )
        known = dict(MIGRATIONS)
        version = 0
        for number, name in rows:
            if number != version + 1 or known.get(number) != name:
                raise SchemaVersionError(
                    f"ledger {self.location} records migration {number} as {name!r}, which no ztcp writes"
                )
            version = number
        return version

    def _read_version(self, conn: psycopg.Connection) -> int | None:
        """The recorded version, 0 for an empty schema, None when the ledger was never created."""
        s = self.schema
        if _row(conn.execute("SELECT to_regclass(%s)", (f"{s}.schema_migrations",)).fetchone())[0] is None:
            if _row(conn.execute("SELECT to_regclass(%s)", (f"{s}.entries",)).fetchone())[0] is not None:
                raise SchemaVersionError(
                    f"ledger {self.location} has ledger tables but no schema_migrations table: "
                    "not a layout any ztcp wrote"
                )
            return None
        rows = conn.execute(f"SELECT version, name FROM {s}.schema_migrations ORDER BY version").fetchall()
        return self._recorded_version(rows)

    def _migrate(self, conn: psycopg.Connection, origin: str, verifier_key: str) -> None:
        s = self.schema
        with conn.transaction():
            # Two processes opening a new database at once: one creates it, the other then finds it.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._migrate_key,))
            # Read and judged before any statement of ours runs: they could damage a layout we do not know.
            version = self._read_version(conn)
            if version:
                row = conn.execute(f"SELECT value FROM {s}.meta WHERE key = 'origin'").fetchone()
                if row is None or row[0] != origin:
                    raise ProvenanceError(
                        f"ledger {self.location} belongs to origin {row[0] if row else None!r}, not {origin!r}"
                    )
            else:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations (version integer PRIMARY KEY, "
                    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            conn.execute(f"SET LOCAL search_path TO {s}")
            for number, name in MIGRATIONS:
                if number > (version or 0):
                    conn.execute(_migration_sql(number, name))
                    conn.execute(f"INSERT INTO {s}.schema_migrations (version, name) VALUES (%s, %s)",
                                 (number, name))
                    if version:
                        log.info("ledger %s upgraded to schema version %d (%s)", self.location, number, name)
            if not version:
                conn.execute(f"INSERT INTO {s}.meta VALUES ('origin', %s), ('verifier_key', %s)",
                             (origin, verifier_key))

    def schema_version(self) -> int:
        with self._conn("read failed") as conn:
            sql = f"SELECT coalesce(max(version), 0) FROM {self.schema}.schema_migrations"  # noqa: S608
            return int(_row(conn.execute(sql).fetchone())[0])

    def close(self) -> None:
        self.stop_integrator()
        with self._guard:
            if self._closed:
                return
            self._closed = True
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- state -------------------------------------------------------------------------------------

    def size(self) -> int:
        """Entries in the tree (in background mode, acknowledged entries may be waiting beyond it)."""
        with self._conn("read failed") as conn:
            return int(_row(conn.execute(self._q["size"]).fetchone())[0])

    def probe(self) -> None:
        # A durable write in a few seconds or LedgerUnavailable: a probe row (never a log entry),
        # committed with synchronous_commit on like an append, under a short statement timeout.
        s = self.schema
        with self._conn("probe failed") as conn, conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '2s'")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.probe (id int PRIMARY KEY, at timestamptz NOT NULL)")
            conn.execute(f"INSERT INTO {s}.probe VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = now()")

    def sequenced_size(self) -> int:
        """Entries acknowledged (the next seq a writer would take)."""
        with self._conn("read failed") as conn:
            return int(_row(conn.execute(self._q["next_seq"]).fetchone())[0])

    def node_hashes(self, ids: Collection[int]) -> dict[int, bytes]:
        with self._conn("read failed") as conn:
            return self._node_hashes(conn.cursor(binary=True), ids)

    def _node_hashes(self, cur: psycopg.Cursor, ids: Collection[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for table, part in (("nodes", [n for n in ids if n & 63 < UPPER_LEVEL]),
                            ("upper_nodes", [n for n in ids if n & 63 >= UPPER_LEVEL])):
            q = f"SELECT id, hash FROM {self.schema}.{table} WHERE id = ANY(%s::int8[])"
            for i in range(0, len(part), _IN_CHUNK):
                out.update(cur.execute(q, (part[i : i + _IN_CHUNK],)).fetchall())
        return out

    def _latest_checkpoint(self, cur: psycopg.Cursor) -> CheckpointRow | None:
        row = cur.execute(self._q["latest_cp"]).fetchone()
        return CheckpointRow(*row) if row else None

    # -- writing -----------------------------------------------------------------------------------

    def append(self, items: Sequence[Prepared], integrate: Integrate) -> Appended:
        with self._conn("write failed") as conn:
            try:
                # Fast path: assume no event id was stored before and let the UNIQUE index say
                # otherwise (the batch is then rolled back and sequenced again with a lookup).
                try:
                    if (self.integration == "background" and len(items) <= _ONE_STATEMENT
                            and len({p.event_id for p in items}) == len(items)):
                        done = self._append_small(conn, items)
                    else:
                        done = self._append_once(conn, items, integrate, lookup=False)
                except pg_errors.UniqueViolation as exc:
                    if exc.diag.constraint_name != "entries_event_id_key":
                        raise
                    done = self._append_once(conn, items, integrate, lookup=True)
            except psycopg.Error as exc:  # rolled back by the transaction block: nothing of the batch stays
                raise LedgerUnavailable(f"ledger write failed: {self._reason(exc)}") from None
        integrator = self._integrator
        if done.written and integrator is not None:
            integrator.wake.set()
        return done

    def _append_small(self, conn: psycopg.Connection, items: Sequence[Prepared]) -> Appended:
        """A few events (the gateway's usual append) in one statement, so one round trip and the
        flush: lock the sequencer row, insert at its next_seq, move it, commit (autocommit). The
        same transaction as ``_append_once``; a stored event id fails it the same way."""
        first = _row(conn.execute(self._q["append_small"], (
            [p.event_id for p in items], [p.citizen_key for p in items], [p.time_us for p in items],
            [p.type for p in items], [p.body for p in items], [p.leaf_hash for p in items], len(items),
        )).fetchone())[0]
        receipts = [_MAKE(Receipt, (seq, p.leaf_hash, p.event_id, False)) for seq, p in enumerate(items, first)]
        return Appended(receipts, first, items, None)

    def _append_once(self, conn: psycopg.Connection, items: Sequence[Prepared], integrate: Integrate, *,
                     lookup: bool) -> Appended:
        with conn.transaction():
            cur = conn.cursor(binary=True)
            # The sequencer's lock: every other writer, in any process, waits here until we commit.
            # (READ COMMITTED: each later statement sees what the writer before us committed.)
            first = _row(cur.execute(self._q["seq_lock"]).fetchone())[0]
            known = self._lookup(cur, [p.event_id for p in items]) if lookup else {}
            new, receipts = assign_seqs(items, first, known)
            if not new:
                return Appended(receipts, first, (), None)
            with cur.copy(self._q["copy_entries"]) as cp:
                cp.set_types(_ENTRY_TYPES)
                write = cp.write_row
                for seq, p in enumerate(new, first):
                    write((seq, p.event_id, p.citizen_key, p.time_us, p.type, p.body, p.leaf_hash))
            cur.execute(self._q["seq_set"], (first + len(new),))
            if self.integration == "background":
                return Appended(receipts, first, new, None)
            # Inline: extend the tree in this same transaction (entries waiting from a background
            # writer on the same database, if any, go in first: the tree has no holes).
            size = _row(cur.execute(self._q["tree_lock"]).fetchone())[0]
            if size > first:
                raise LedgerUnavailable(f"ledger {self.location}: the tree ({size}) is ahead of the sequence ({first})")
            batch = [*self._read_entries(cur, size, first, bodies=True), *new] if size < first else new
            integration = integrate(_View(self, cur, size), batch)
            self._write_tree(cur, size, integration, batch)
            return Appended(receipts, size, batch, integration)

    def _lookup(self, cur: psycopg.Cursor, ids: Sequence[str]) -> dict[str, Receipt]:
        out: dict[str, Receipt] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            for eid, seq, lh in cur.execute(self._q["lookup"], (list(ids[i : i + _IN_CHUNK]),)):
                out[eid] = Receipt(seq, lh, eid, duplicate=True)
        return out

    def _read_entries(self, cur: psycopg.Cursor, lo: int, hi: int, *, bodies: bool) -> list[Prepared]:
        """Entries [lo, hi) for the integrator; the sequence must be whole there."""
        if bodies:
            rows = cur.execute(self._q["read_full"], (lo, hi)).fetchall()
            out = [_MAKE(Prepared, r[1:]) for r in rows]
        else:  # the tree needs only the leaf hashes, the citizen index the keys
            rows = cur.execute(self._q["read_hashes"], (lo, hi)).fetchall()
            out = [_MAKE(Prepared, (eid, ck, 0, "", b"", lh)) for _s, eid, ck, lh in rows]
        if len(rows) != hi - lo or (rows and (rows[0][0] != lo or rows[-1][0] != hi - 1)):
            have = {r[0] for r in rows}
            gap = next(s for s in range(lo, hi) if s not in have)
            raise LedgerUnavailable(
                f"ledger {self.location}: entry {gap} is missing below the sequencer's next seq {hi}; "
                "the tree cannot be extended over a gap (run `ztcp audit verify`)"
            )
        return out

    def _write_tree(self, cur: psycopg.Cursor, size: int, integration: Integration,
                    batch: Sequence[Prepared]) -> None:
        """Nodes, citizen index rows, checkpoint and the new size of entries [size, size + len(batch))."""
        for table, (ids, hashes) in (("nodes", integration.nodes), ("upper_nodes", integration.upper)):
            if ids:
                with cur.copy(self._q["copy_nodes"].format(self.schema, table)) as cp:
                    cp.set_types(("int8", "bytea"))
                    write = cp.write_row
                    for row in zip(ids, hashes, strict=True):
                        write(row)
        citizens = [(seq >> SEGMENT_BITS, p.citizen_key, seq) for seq, p in enumerate(batch, size)
                    if p.citizen_key is not None]
        if citizens:
            with cur.copy(self._q["copy_citizens"]) as cp:
                cp.set_types(("int4", "int8", "int8"))
                write = cp.write_row
                for citizen_row in citizens:
                    write(citizen_row)
        if integration.checkpoint is not None:
            cur.execute(self._q["checkpoint"], tuple(integration.checkpoint))
        cur.execute(self._q["tree_set"], (size + len(batch),))

    def add_checkpoint(self, row: CheckpointRow) -> None:
        try:
            with self._conn("write failed") as conn:
                conn.execute(self._q["checkpoint"], tuple(row))
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"cannot store checkpoint: {self._reason(exc)}") from None

    # -- integration (background mode) ---------------------------------------------------------------

    def _integrate_step(self, conn: psycopg.Connection, integrate: Integrate, *, bodies: bool) -> Appended | None:
        """Extend the tree over up to ``integrate_batch`` waiting entries, in one transaction."""
        cur = conn.cursor(binary=True)
        size, top = _row(cur.execute(self._q["pending"]).fetchone())  # cheap; also the session's heartbeat
        if top <= size:
            return None
        with conn.transaction():
            size = _row(cur.execute(self._q["tree_lock"]).fetchone())[0]
            top = _row(cur.execute(self._q["next_seq"]).fetchone())[0]
            hi = min(top, size + self.integrate_batch)
            if hi <= size:
                return None
            batch = self._read_entries(cur, size, hi, bodies=bodies)
            integration = integrate(_View(self, cur, size), batch)
            self._write_tree(cur, size, integration, batch)
        return Appended([], size, batch, integration)

    def start_integrator(self, integrate: Integrate, committed: Callable[[Appended], None], *,
                         bodies: bool = False) -> None:
        """Be a candidate integrator from now on (a thread): integrate whenever this process holds
        the role, try to take it otherwise. ``committed`` is called after each integration commit
        (the ledger adopts its new tree state there); ``bodies``: hand it the entries' bodies too."""
        if not self.integrates_in_background:
            return
        self._live_pool()
        if self._integrator is None:
            self._integrator = _Integrator(self, integrate, committed, bodies)
            self._integrator.start()

    def stop_integrator(self) -> None:
        integrator, self._integrator = self._integrator, None
        if integrator is not None:
            integrator.stop()

    def integrate_pending(self, integrate: Integrate, committed: Callable[[Appended], None], *,
                          timeout: float = 10.0, bodies: bool = False) -> bool:
        """Return once the tree holds every entry acknowledged before the call: integrate them here
        if no other process is the integrator, else wait for it. False if ``timeout`` passed first."""
        if not self.integrates_in_background:
            return True
        target = self.sequenced_size()
        integrator = self._integrator
        own = integrator is None
        if integrator is None:
            integrator = _Integrator(self, integrate, committed, bodies)
        deadline = time.monotonic() + timeout
        try:
            while self.size() < target:
                with integrator.lock:
                    if integrator.try_lead():
                        while integrator.step() and self.size() < target:
                            pass
                        continue
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)
            return True
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"ledger {self.location}: cannot integrate: {self._reason(exc)}") from None
        finally:
            if own:
                with integrator.lock:
                    integrator.resign()

    def integrator_status(self) -> dict[str, Any]:
        """This process's part: ``leader``, ``standby`` or ``none``, since when, and the last error."""
        it = self._integrator
        if it is None:
            return {"role": "none"}
        return {"role": "leader" if it.leader else "standby", "error": it.error, "integrated_at": it.last_at}

    # -- lookups -----------------------------------------------------------------------------------

    def get(self, seq: int) -> StoredEntry | None:
        s = self.schema
        with self._conn("read failed") as conn:
            row = conn.cursor(binary=True).execute(
                f"SELECT {_ENTRY_COLUMNS} FROM {s}.entries WHERE seq = %s "
                f"AND seq < (SELECT size FROM {s}.tree WHERE id = 1)", (seq,)
            ).fetchone()
        return StoredEntry(*row) if row else None

    def by_event_ids(self, event_ids: Sequence[str]) -> dict[str, StoredEntry]:
        """Every acknowledged entry with one of these ids (integrated or not yet: its seq is final)."""
        ids = list(dict.fromkeys(event_ids))
        out: dict[str, StoredEntry] = {}
        q = f"SELECT {_ENTRY_COLUMNS} FROM {self.schema}.entries WHERE event_id = ANY(%s::text[])"
        with self._conn("read failed") as conn:
            cur = conn.cursor(binary=True)
            for i in range(0, len(ids), _IN_CHUNK):
                for row in cur.execute(q, (ids[i : i + _IN_CHUNK],)):
                    out[row[1]] = StoredEntry(*row)
        return out

    def entries(self, start: int, end: int) -> Iterator[StoredEntry]:
        bound = min(end, self.size())
        q = (f"SELECT {_ENTRY_COLUMNS} FROM {self.schema}.entries WHERE seq >= %s AND seq < %s "
             "ORDER BY seq LIMIT %s")

        def pages() -> Iterator[StoredEntry]:
            lo = start
            while lo < bound:
                with self._conn("read failed") as conn:
                    rows = conn.cursor(binary=True).execute(q, (lo, bound, _PAGE)).fetchall()
                yield from (StoredEntry(*r) for r in rows)
                if len(rows) < _PAGE:
                    return
                lo = rows[-1][0] + 1

        return pages()

    def citizen_entries(self, key: int, since_us: int, until_us: int, after_seq: int = -1) -> Iterator[StoredEntry]:
        s = self.schema
        with self._conn("read failed") as conn:
            cur = conn.cursor(binary=True)
            size = _row(cur.execute(self._q["size"]).fetchone())[0]
            if size == 0:
                return iter(())
            segments = list(range(max(after_seq, 0) >> SEGMENT_BITS, ((size - 1) >> SEGMENT_BITS) + 1))
            rows = cur.execute(
                f"SELECT e.seq, e.event_id, e.leaf_hash, e.body FROM {s}.citizens c JOIN {s}.entries e "
                "ON e.seq = c.seq WHERE c.segment = ANY(%s::int4[]) AND c.citizen_key = %s AND c.seq > %s "
                "AND c.seq < %s AND e.time_us >= %s AND e.time_us < %s ORDER BY c.seq",
                (segments, key, after_seq, size, since_us, until_us),
            ).fetchall()
        return (StoredEntry(*r) for r in rows)

    # -- checkpoints -------------------------------------------------------------------------------

    def latest_checkpoint(self) -> CheckpointRow | None:
        with self._conn("read failed") as conn:
            return self._latest_checkpoint(conn.cursor(binary=True))

    def checkpoint_at(self, size: int) -> CheckpointRow | None:
        with self._conn("read failed") as conn:
            row = conn.cursor(binary=True).execute(
                f"SELECT size, root, time_us, note FROM {self.schema}.checkpoints WHERE size = %s", (size,)
            ).fetchone()
        return CheckpointRow(*row) if row else None

    def checkpoints(self) -> Iterator[CheckpointRow]:
        with self._conn("read failed") as conn:
            rows = conn.cursor(binary=True).execute(
                f"SELECT size, root, time_us, note FROM {self.schema}.checkpoints ORDER BY size"
            ).fetchall()
        return (CheckpointRow(*r) for r in rows)

    # -- whole-store reads -------------------------------------------------------------------------

    def _pinned(self, pages: Callable[[int], Iterator[Any]]) -> Iterator[Any]:
        """Run ``pages(bound)`` with the tree size the first open scan of this thread saw.

        ``verify`` reads ``scan`` and ``scan_nodes`` side by side; if each took its own size, the
        integrator committing between them would look like nodes without entries. Everything below a
        size is immutable, so agreeing on the size is all the consistency the two need."""
        local = self._local
        pin = getattr(local, "pin", None)
        if pin is None:
            with self._conn("read failed") as conn:
                pin = local.pin = [_row(conn.execute(self._q["size"]).fetchone())[0], 0]
        pin[1] += 1
        try:
            yield from pages(pin[0])
        finally:
            pin[1] -= 1
            if pin[1] == 0:
                local.pin = None

    def scan(self, start: int | None = None, limit: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        s = self.schema
        # The tree's rows, plus any row at or beyond the sequencer's next seq: no writer put it there.
        q = (f"SELECT seq, leaf_hash, body FROM {s}.entries WHERE seq >= %s AND (seq < %s OR "
             f"seq >= (SELECT next_seq FROM {s}.sequencer WHERE id = 1)) ORDER BY seq LIMIT %s")

        def pages(bound: int) -> Iterator[tuple[int, bytes, bytes]]:
            lo = _LOW if start is None else start
            left = limit
            while left is None or left > 0:
                n = _PAGE if left is None else min(_PAGE, left)
                with self._conn("read failed") as conn:
                    rows = conn.cursor(binary=True).execute(q, (lo, bound, n)).fetchall()
                yield from rows
                if len(rows) < n:
                    return
                if left is not None:
                    left -= len(rows)
                lo = rows[-1][0] + 1

        return self._pinned(pages)

    def scan_nodes(self) -> Iterator[tuple[int, bytes]]:
        s = self.schema
        # Nodes of the tree's leaves, plus any beyond the tree's current size (no integrator wrote those).
        part = (f"(SELECT id, hash FROM {s}.{{t}} WHERE id >= %(lo)s AND (id < %(bound)s OR "
                f"id >= ((SELECT size FROM {s}.tree WHERE id = 1) << 6)) ORDER BY id LIMIT %(n)s)")
        q = (f"SELECT id, hash FROM ({part.format(t='nodes')} UNION ALL {part.format(t='upper_nodes')}) "
             "AS n ORDER BY id LIMIT %(n)s")

        def pages(bound: int) -> Iterator[tuple[int, bytes]]:
            lo = _LOW
            while True:
                with self._conn("read failed") as conn:
                    rows = conn.cursor(binary=True).execute(q, {"lo": lo, "bound": bound << 6, "n": _PAGE}).fetchall()
                yield from rows
                if len(rows) < _PAGE:
                    return
                lo = rows[-1][0] + 1

        return self._pinned(pages)

    def backup_to(self, path: str | Path) -> None:
        """A SQLite ledger file (the SQLite driver's layout) from one snapshot of the database.

        Every acknowledged entry is in it, as stored: entries still waiting for the integrator are
        copied with the tree nodes they will get (computed here, the same hashes the integrator will
        write), so the copy is a complete, verifiable ledger at one point of the sequence. Works on
        a store that was never opened (``ztcp backup`` while ``ztcp serve`` appends)."""
        target = Path(path)
        if target.exists():
            raise FileExistsError(f"{target} exists; a ledger copy is only written to a new file")
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            with self._connect() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one snapshot
                self._copy_snapshot(conn, partial)
            partial.replace(target)
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"cannot copy ledger {self.location}: {self._reason(exc)}") from None
        finally:
            partial.unlink(missing_ok=True)

    def _copy_snapshot(self, conn: psycopg.Connection, partial: Path) -> None:
        s = self.schema
        version = self._read_version(conn)
        if not version:
            raise LedgerUnavailable(f"cannot copy ledger {self.location}: there is no ledger there")
        meta: dict[str, str] = dict(conn.execute(f"SELECT key, value FROM {s}.meta").fetchall())
        size = _row(conn.execute(self._q["size"]).fetchone())[0]
        top = _row(conn.execute(self._q["next_seq"]).fetchone())[0] if version >= 2 else size
        out = SqliteLedgerStore(partial)
        out.open(meta["origin"], meta.get("verifier_key", ""))
        out.close()
        db = sqlite3.connect(partial, isolation_level=None)
        try:
            db.execute("BEGIN")
            cur = conn.cursor(name="ztcp_ledger_backup", binary=True)
            cur.itersize = _PAGE
            cur.execute(f"SELECT seq, event_id, citizen_key, time_us, type, body, leaf_hash FROM {s}.entries "
                        "ORDER BY seq")
            waiting: list[bytes] = []  # leaf hashes of [size, top): acknowledged, not yet in the tree
            while rows := cur.fetchmany(_PAGE):
                db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                waiting += [r[6] for r in rows if size <= r[0] < top]
            cur.close()
            for table in ("nodes", "upper_nodes"):
                cur = conn.cursor(name=f"ztcp_ledger_backup_{table}", binary=True)
                cur.itersize = _PAGE
                cur.execute(f"SELECT id, hash FROM {s}.{table} ORDER BY id")
                while rows := cur.fetchmany(_PAGE):
                    db.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
                cur.close()
            if waiting and len(waiting) == top - size:
                self._copy_waiting_nodes(conn.cursor(binary=True), db, size, waiting)
            cps = conn.execute(f"SELECT size, root, time_us, note FROM {s}.checkpoints ORDER BY size").fetchall()
            db.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", cps)
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no WAL beside it
        finally:
            db.close()

    def _copy_waiting_nodes(self, cur: psycopg.Cursor, db: sqlite3.Connection, size: int,
                            leaves: list[bytes]) -> None:
        """The nodes that entries [size, size + len(leaves)) close, computed from the stored frontier.
        A frontier that cannot be read (a damaged tree) is left alone: the copy is then as damaged as
        the source, and verifying it says so."""
        plan = merkle.range_nodes(0, size)
        stored = self._node_hashes(cur, [node_id(lv, ix) for lv, ix in plan])
        if len(stored) != len(plan):
            return
        tree = merkle.CompactRange(size, [stored[node_id(lv, ix)] for lv, ix in plan])
        lower: list[tuple[int, bytes]] = []
        upper: list[tuple[int, bytes]] = []
        for lh in leaves:
            for level, index, h in tree.append(lh):
                (lower if level < UPPER_LEVEL else upper).append((node_id(level, index), h))
        db.executemany("INSERT INTO nodes VALUES (?, ?)", lower)
        db.executemany("INSERT INTO upper_nodes VALUES (?, ?)", upper)


class _Integrator:
    """This process's integrator candidate: one session of its own, the advisory lock, the loop.

    ``lock`` guards the session and the role: the background thread and ``integrate_pending`` take
    turns on it. All integration runs on the session that holds the advisory lock, so it stops the
    moment that session does (fencing): no integrator can write after losing the role.
    """

    def __init__(self, store: PostgresLedgerStore, integrate: Integrate, committed: Callable[[Appended], None],
                 bodies: bool) -> None:
        self.store = store
        self.integrate = integrate
        self.committed = committed
        self.bodies = bodies
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None
        self.leader = False
        self.error: str | None = None
        self.last_at: float | None = None  # time.time() of the last integration commit
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ztcp-ledger-integrator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self.lock:
            self.resign()

    def try_lead(self) -> bool:
        """Hold the role, or take it if it is free (the caller holds ``lock``)."""
        if self.leader:
            return True
        if self.conn is None or self.conn.closed:
            self.conn = self.store._connect()
            ms = max(1000, int(self.store.session_timeout * 1000))
            # A hung holder is cut off by the server, which frees the lock for a standby. The loop
            # below runs a statement at least every standby_poll seconds, far inside this.
            self.conn.execute(f"SET idle_session_timeout = {ms}")
            self.conn.execute(f"SET idle_in_transaction_session_timeout = {ms}")
            # What this session writes is recomputable from durable entries (module notes): its
            # commits need not wait for the disk, nor make the writers' flushes wait behind them.
            self.conn.execute("SET synchronous_commit = off")
        if _row(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.store._lock_key,)).fetchone())[0]:
            self.leader = True
            log.info("ledger %s: this process is the integrator now", self.store.location)
        return self.leader

    def resign(self) -> None:
        """Give up the role and the session (the caller holds ``lock``). Closing the session releases
        the advisory lock even if the server never hears an unlock."""
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        if self.leader:
            log.info("ledger %s: this process is no longer the integrator", self.store.location)
        self.leader = False

    def step(self) -> int:
        """Integrate one batch (the caller holds ``lock`` and the role); returns how many entries."""
        assert self.conn is not None
        done = self.store._integrate_step(self.conn, self.integrate, bodies=self.bodies)
        if done is None:
            return 0
        self.last_at = time.time()
        self.committed(done)
        return len(done.written)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                with self.lock:
                    n = self.step() if self.try_lead() else 0
                    leader = self.leader
                self.error, backoff = None, 0.0
                if n:
                    continue  # more may be waiting
                self.wake.wait(self.store.integrator_poll if leader else self.store.standby_poll)
                self.wake.clear()
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one failure; it says why
                self.error = self.store._reason(exc)
                log.warning("ledger %s: integrator: %s", self.store.location, self.error)
                with self.lock:
                    self.resign()  # a broken session holds nothing; a failing step lets a standby try
                backoff = min(max(2 * backoff, 0.1), self.store.standby_poll)
                self._stop.wait(backoff)
