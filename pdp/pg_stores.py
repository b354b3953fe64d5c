"""The PostgreSQL drivers of the decision log and the signal history, shared by every replica.

``ZTCP_DATABASE_URL=postgresql://…`` selects them. Tables are named for their component
(``decision_log``, ``signal_observations``, ``signal_known_devices``, ``signal_known_datasets``) so
they can share one database with the other stores of ztcp; versions are kept in ``ztcp_schema``
(see :mod:`pdp.storage`, which also explains the ordering lock every writer takes).

Each role has its own connection (:class:`pdp.storage.PgSession`, remade after a failure): the
writer thread's, the readers', and for the signal history a listener (``LISTEN ztcp_signals``) and
a lookup connection for the decide path's read-through, so a slow tail query never delays it.

Durability: decision-log commits wait for the WAL flush (the log is audit evidence; an entry is
only counted written once durable). Observation commits do not (``synchronous_commit=off``): they
are visible to other replicas at commit either way, and a database crash can lose at most the last
fraction of a second of them, which only makes a signal briefly under-count; waiting for the flush
would add that latency to every replica's view of every decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from contracts.chained_log import PruneMark, PruneResult, SignedHead
from contracts.log_chain import GENESIS
from pdp.decision_chain import (
    LOG_NAME,
    PRUNE_WINDOW,
    chain_existing,
    chain_links,
    chain_record,
    head_from_row,
    mark_from_row,
    prune_plan,
)
from pdp.devices import UNKNOWN_DEVICE
from pdp.storage import (
    LOCK_DECISIONS,
    LOCK_OBSERVATIONS,
    OBSERVATION_COLUMNS,
    Migration,
    PgSession,
    check_pg,
    decision_row,
    migrate_pg,
    pg_connect,
)

if TYPE_CHECKING:
    import psycopg

    from pdp.signals import Observation, Snapshot

CHANNEL = "ztcp_signals"

DECISION_MIGRATIONS = (
    Migration(1, "decision_log: seq, id, time, indexed subject/citizen/effect/revision, the entry as JSON", (
        # entry holds the same orjson bytes as the SQLite driver (JSONB would reorder keys and
        # reformat numbers); SQL can still look inside: convert_from(entry, 'UTF8')::jsonb.
        """CREATE TABLE decision_log (
          seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          decision_id TEXT NOT NULL UNIQUE,
          timestamp TEXT NOT NULL,
          ts DOUBLE PRECISION NOT NULL,
          subject_id TEXT,
          citizen_ref TEXT,
          effect TEXT NOT NULL,
          revision TEXT,
          entry BYTEA NOT NULL)""",
        "CREATE INDEX decision_log_ts ON decision_log (ts)",
        "CREATE INDEX decision_log_subject ON decision_log (subject_id, ts)",
    )),
    # The hash chain (pdp.decision_chain), as in the SQLite driver; existing entries chained here.
    Migration(2, "decision_log: hash chain (link, head, prune marks, signed heads); existing entries chained", (
        "ALTER TABLE decision_log ADD COLUMN link BYTEA",
        "CREATE TABLE decision_log_chain (id INT PRIMARY KEY CHECK (id = 1), head BYTEA NOT NULL)",
        """CREATE TABLE decision_log_prune_marks (after_seq BIGINT PRIMARY KEY, through_seq BIGINT NOT NULL,
          link BYTEA NOT NULL, count BIGINT NOT NULL, note TEXT, at DOUBLE PRECISION NOT NULL)""",
        "CREATE TABLE decision_log_heads (seq BIGINT PRIMARY KEY, note TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
    ), run=lambda conn: _chain_existing(conn)),
)


class _DryRun(Exception):  # noqa: N818 - not an error: ends a dry run's window transaction (rolled back)
    def __init__(self, last: int) -> None:
        super().__init__(last)
        self.last = last


def _chain_existing(conn: psycopg.Connection) -> None:
    def store(links: list[tuple[bytes, int]]) -> None:
        with conn.cursor() as cur:
            cur.executemany("UPDATE decision_log SET link = %s WHERE seq = %s", links)

    head = chain_existing(
        lambda after: conn.execute("SELECT seq, decision_id, entry FROM decision_log WHERE seq > %s ORDER BY seq "
                                   "LIMIT 5000", (after,)).fetchall(),
        store)
    conn.execute("INSERT INTO decision_log_chain VALUES (1, %s)", (head,))

_OBS = ", ".join(OBSERVATION_COLUMNS)
SIGNAL_MIGRATIONS = (
    Migration(1, "signal_observations with id, origin and per-origin sequence; first-seen devices and datasets", (
        """CREATE TABLE signal_observations (
          id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          origin TEXT NOT NULL, oseq BIGINT NOT NULL,
          ts DOUBLE PRECISION NOT NULL, subject TEXT NOT NULL, device TEXT, citizen_ref TEXT, dataset TEXT,
          lat DOUBLE PRECISION, lon DOUBLE PRECISION, effect TEXT NOT NULL, resource_key TEXT NOT NULL,
          UNIQUE (origin, oseq))""",
        "CREATE INDEX signal_observations_ts ON signal_observations (ts)",
        "CREATE INDEX signal_observations_subject ON signal_observations (subject, id)",
        """CREATE TABLE signal_known_devices (
          subject TEXT NOT NULL, device TEXT NOT NULL, first_seen DOUBLE PRECISION NOT NULL,
          PRIMARY KEY (subject, device))""",
        """CREATE TABLE signal_known_datasets (
          subject TEXT NOT NULL, dataset TEXT NOT NULL, first_seen DOUBLE PRECISION NOT NULL,
          PRIMARY KEY (subject, dataset))""",
    )),
)


def _open(url: str, component: str, migrations: tuple[Migration, ...], readonly: bool) -> None:
    """Migrate (or, read-only, check) the schema once, on a connection of its own."""
    import psycopg

    from pdp.storage import unavailable

    try:
        conn = pg_connect(url)
    except psycopg.Error as exc:
        raise unavailable(exc) from exc
    try:
        if readonly:
            check_pg(conn, component, migrations)
            conn.rollback()
        else:
            migrate_pg(conn, component, migrations)
    except psycopg.Error as exc:
        raise unavailable(exc) from exc
    finally:
        conn.close()


class PostgresDecisionStore:
    """The decision log in PostgreSQL: every replica appends, the SIEM follows ``seq``."""

    component = "decision_log"
    migrations = DECISION_MIGRATIONS
    # The writer pauses this long after each commit so batches gather under load: the SIEM and the
    # auditors read the log, no decision waits for it, and 10 ms is nothing to them.
    batch_interval = 0.01

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.path = None  # no file: backups and file checks skip this store
        self.readonly = readonly
        _open(url, self.component, self.migrations, readonly)
        self._writer = PgSession(url)
        self._reader = PgSession(url, autocommit=True)

    def __repr__(self) -> str:
        return "PostgresDecisionStore(<ZTCP_DATABASE_URL>)"

    def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        rows = [decision_row(e) for e in entries]

        def insert(conn: psycopg.Connection) -> None:
            with conn.transaction():
                # The ordering lock also guards the chain head: replicas append one batch at a time.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_DECISIONS,))
                stored = {r[0] for r in conn.execute(
                    "SELECT decision_id FROM decision_log WHERE decision_id = ANY(%s)", ([r[0] for r in rows],))}
                fresh, seen = [], set()
                for r in rows:
                    if r[0] not in stored and r[0] not in seen:
                        seen.add(r[0])
                        fresh.append(r)
                if not fresh:
                    return
                head_row = conn.execute("SELECT head FROM decision_log_chain").fetchone()
                links, head = chain_links(bytes(head_row[0]) if head_row else GENESIS, fresh)
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO decision_log (decision_id, timestamp, ts, subject_id, citizen_ref, effect,"
                        " revision, entry, link) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        [(*r, lk) for r, lk in zip(fresh, links, strict=True)])
                conn.execute("UPDATE decision_log_chain SET head = %s", (head,))

        # Idempotent by decision_id, so a batch whose commit was cut off unacknowledged is simply retried.
        self._writer.run(insert)

    # -- the chain (contracts.chained_log.ChainedLog) and retention -----------------------------
    chain_name = LOG_NAME

    def chain_rows(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, dict[str, Any], bytes]]:
        rows = self._read("SELECT seq, decision_id, entry, link FROM decision_log WHERE seq > %s ORDER BY seq "
                          "LIMIT %s", (after, limit))
        return [(int(r[0]), chain_record(r[1], bytes(r[2])), bytes(r[3] or b"")) for r in rows]

    def chain_head(self) -> tuple[int, bytes]:
        rows = self._read("SELECT seq, link FROM decision_log ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, GENESIS)

    def prune_marks(self) -> list[PruneMark]:
        return [mark_from_row(r) for r in self._read(
            "SELECT after_seq, through_seq, link, count, note FROM decision_log_prune_marks ORDER BY after_seq")]

    def signed_heads(self) -> list[SignedHead]:
        return [head_from_row(r) for r in self._read("SELECT seq, note FROM decision_log_heads ORDER BY seq")]

    def add_signed_head(self, position: int, note: str) -> None:
        def insert(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute("INSERT INTO decision_log_heads VALUES (%s, %s, %s) ON CONFLICT (seq) DO UPDATE "
                             "SET note = excluded.note, at = excluded.at", (position, note, time.time()))

        self._writer.run(insert)

    def prune(self, before: float, held: Callable[[str | None, str | None], bool] | None = None,
              sign_mark: Callable[[PruneMark], str] | None = None, *, apply: bool = True) -> PruneResult:
        """As :meth:`pdp.sqlite_stores.SqliteDecisionStore.prune`: a window of entries per
        transaction, each under the writers' ordering lock (held for one window at most)."""
        entry = "entry" if held is not None else "NULL::bytea"
        totals = [0, 0, 0]  # deleted, kept by a hold, marks
        top_row = self._read("SELECT max(seq) FROM decision_log WHERE ts < %s", (before,))
        top = top_row[0][0] if top_row else None
        lo = 1

        def window(conn: psycopg.Connection) -> int | None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_DECISIONS,))
                kb = conn.execute("SELECT coalesce(max(seq), 0) FROM decision_log WHERE seq < %s", (lo,)).fetchone()
                rows = conn.execute(f"SELECT seq, link, citizen_ref, ts, {entry} FROM decision_log "  # noqa: S608
                                    "WHERE seq >= %s AND seq <= %s ORDER BY seq LIMIT %s",
                                    (lo, top, PRUNE_WINDOW)).fetchall()
                if not rows:
                    return None
                marks = [mark_from_row(r) for r in conn.execute(
                    "SELECT after_seq, through_seq, link, count, note FROM decision_log_prune_marks")]
                runs, new, gone, held_here = prune_plan(rows, before, held, marks, int(kb[0]) if kb else 0)
                totals[0] += sum(len(r.positions) for r in runs)
                totals[1] += held_here
                if apply:
                    with conn.cursor() as cur:
                        cur.executemany("DELETE FROM decision_log WHERE seq > %s AND seq <= %s",
                                        [(r.after, r.through) for r in runs])
                        cur.executemany("DELETE FROM decision_log_prune_marks WHERE after_seq = %s",
                                        [(a,) for a in gone])
                        now = time.time()
                        cur.executemany("INSERT INTO decision_log_prune_marks VALUES (%s, %s, %s, %s, %s, %s)",
                                        [(m.after, m.through, m.link, m.count,
                                          sign_mark(m) if sign_mark else None, now) for m in new])
                    totals[2] += len(new) - len(set(gone) & {m.after for m in new})
                else:
                    raise _DryRun(int(rows[-1][0]))  # roll the window back
                return int(rows[-1][0])

        while top is not None and lo <= top:
            try:
                last = self._writer.run(window, retry=False)
            except _DryRun as dry:
                last = dry.last
            if last is None:
                break
            lo = last + 1
        return PruneResult(LOG_NAME, totals[0], totals[1], totals[2])

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._reader.run(lambda conn: conn.execute(sql, args).fetchall())

    def get(self, decision_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT entry FROM decision_log WHERE decision_id = %s", (decision_id,))
        return orjson.loads(rows[0][0]) if rows else None

    def entries(self, *, since: float | None = None, last: int | None = None) -> list[dict[str, Any]]:
        if last is not None:
            rows = self._read("SELECT entry FROM (SELECT seq, entry FROM decision_log ORDER BY seq DESC LIMIT %s) t "
                              "ORDER BY seq", (last,))
        else:
            rows = self._read("SELECT entry FROM decision_log WHERE ts >= %s ORDER BY seq", (since or 0.0,))
        return [orjson.loads(r[0]) for r in rows]

    def iter_since(self, cursor: int = 0, limit: int = 10_000) -> tuple[list[dict[str, Any]], int]:
        rows = self._read("SELECT seq, entry FROM decision_log WHERE seq > %s ORDER BY seq LIMIT %s",
                          (cursor, limit))
        if not rows:
            return [], cursor
        return [orjson.loads(r[1]) for r in rows], int(rows[-1][0])

    def cursor(self) -> int:
        return int(self._read("SELECT coalesce(max(seq), 0) FROM decision_log")[0][0])

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM decision_log")[0][0])

    def count_after(self, cursor: int) -> int:
        return int(self._read("SELECT count(*) FROM decision_log WHERE seq > %s", (cursor,))[0][0])

    def counts_by_effect(self) -> dict[str, int]:
        return {effect: int(n) for effect, n in self._read("SELECT effect, count(*) FROM decision_log GROUP BY effect")}

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def _sync_commit_off(conn: psycopg.Connection) -> None:
    conn.execute("SET synchronous_commit = off")  # see the module docstring
    conn.commit()


def _listen(conn: psycopg.Connection) -> None:
    conn.execute(f"LISTEN {CHANNEL}")


def _lookup_limits(conn: psycopg.Connection) -> None:
    # The read-through runs on the decide path: it answers in milliseconds or the decision is denied.
    conn.execute("SET statement_timeout = 2000")


class PostgresSignalStore:
    """Observations of every replica's decisions, and first-seen devices and datasets.

    Each append commits with ``NOTIFY ztcp_signals`` (payload: the writer's origin), so the others'
    :meth:`wait` returns within a millisecond or so of the commit and their history reads
    :meth:`after` its cursor; :meth:`wait` also returns after ``timeout`` so a lost notification
    (a listener reconnecting) costs at most one poll interval.
    """

    component = "signals"
    migrations = SIGNAL_MIGRATIONS
    shared = True
    poll_interval = 0.1
    flush_interval = 0.5  # an upper bound only: on a shared store the history wakes its writer at once
    # Each commit costs ~5 statements and a round trip whatever its size; 2 ms between commits keeps
    # the others' view a few milliseconds behind at most and lets batches grow with the load.
    batch_interval = 0.002

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = None
        _open(url, self.component, self.migrations, readonly=False)
        self._writer = PgSession(url, setup=_sync_commit_off)
        self._tail = PgSession(url, autocommit=True)
        self._lookup = PgSession(url, autocommit=True, setup=_lookup_limits)
        self._listener = PgSession(url, autocommit=True, setup=_listen)
        self._closed = False

    def __repr__(self) -> str:
        return "PostgresSignalStore(<ZTCP_DATABASE_URL>)"

    def load(self, since: float) -> Snapshot:
        def snapshot(conn: psycopg.Connection) -> Snapshot:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                hi = conn.execute("SELECT coalesce(max(id), 0) FROM signal_observations").fetchone()[0]  # type: ignore[index]  # max() always returns a row
                rows = conn.execute(f"SELECT {_OBS} FROM signal_observations WHERE ts >= %s AND id <= %s "  # noqa: S608
                                    "ORDER BY ts, id", (since, hi)).fetchall()
                devices = conn.execute("SELECT subject, device FROM signal_known_devices").fetchall()
                datasets = conn.execute("SELECT subject, dataset FROM signal_known_datasets").fetchall()
            return rows, devices, datasets, int(hi)

        return self._tail.run(snapshot)

    def append(self, origin: str, batch: Sequence[tuple[int, Observation]]) -> None:
        obs = [(origin, oseq, *row) for oseq, row in batch]
        devices = [(r[1], r[2], r[0]) for _, r in batch if r[2] and r[2] != UNKNOWN_DEVICE and r[7] == "permit"]
        datasets = [(r[1], r[4], r[0]) for _, r in batch if r[4] and r[7] == "permit"]

        def insert(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_OBSERVATIONS,))
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO signal_observations (origin, oseq, {_OBS}) "  # noqa: S608
                                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (origin, oseq) DO NOTHING",
                                    obs)
                    if devices:
                        cur.executemany("INSERT INTO signal_known_devices VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                                        devices)
                    if datasets:
                        cur.executemany("INSERT INTO signal_known_datasets VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                                        datasets)
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, origin))

        self._writer.run(insert)  # (origin, oseq) makes a retried batch a no-op

    def after(self, cursor: int, origin: str, limit: int = 5000) -> tuple[list[tuple[int, Observation]], int, bool]:
        # One statement, one snapshot: the high-water mark and the rows below it. With the ordering
        # lock every id below a visible one is visible, so the cursor may jump to the mark.
        sql = (f"SELECT h.hi, o.id, {', '.join('o.' + c for c in OBSERVATION_COLUMNS)} "  # noqa: S608
               "FROM (SELECT greatest(coalesce(max(id), 0), %(c)s) AS hi FROM signal_observations) h "
               "LEFT JOIN LATERAL (SELECT * FROM signal_observations WHERE id > %(c)s AND id <= h.hi "
               "AND origin <> %(me)s ORDER BY id LIMIT %(n)s) o ON true")
        result = self._tail.run(lambda conn: conn.execute(sql, {"c": cursor, "me": origin, "n": limit}).fetchall())
        hi = int(result[0][0])
        rows = [(int(r[1]), tuple(r[2:])) for r in result if r[1] is not None]
        if len(rows) >= limit:
            return rows, rows[-1][0], False
        return rows, hi, True

    def subject_after(self, subject: str, cursor: int, origin: str) -> list[tuple[int, Observation]]:
        sql = (f"SELECT id, {_OBS} FROM signal_observations WHERE subject = %s AND id > %s AND origin <> %s "  # noqa: S608
               "ORDER BY id")
        # No retry: on the decide path a failure is answered at once (deny), not after a second try.
        rows = self._lookup.run(lambda conn: conn.execute(sql, (subject, cursor, origin)).fetchall(), retry=False)
        return [(int(r[0]), tuple(r[1:])) for r in rows]

    def prune(self, before: float) -> None:
        def delete(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute("DELETE FROM signal_observations WHERE ts < %s", (before,))

        self._writer.run(delete)

    def wait(self, timeout: float, origin: str) -> None:
        """Until an origin other than ``origin`` commits observations, or ``timeout``. Raises StoreUnavailable if the
        listener cannot (re)connect; notifications missed while it was away are caught up by
        :meth:`after`, which the history calls after every wait."""
        import time

        if self._closed:
            return
        deadline = time.monotonic() + timeout
        with self._listener.use() as conn:
            while (left := deadline - time.monotonic()) > 0:
                for note in conn.notifies(timeout=left, stop_after=1):
                    if note.payload != origin:
                        return
                    break

    def close(self) -> None:
        self._closed = True
        for session in (self._writer, self._tail, self._lookup, self._listener):
            session.close()
