"""One behaviour for every ledger store driver: the contract of ``provenance.store.LedgerStore``.

Every test runs against each driver in ``HARNESSES``. A driver's harness says how to make a store
and how to do, from outside, what an older ztcp, a failing disk or server, or an attacker would do
to its data. PostgreSQL runs here with ``integration="inline"``: the contract exactly (every append
integrates in its own transaction). Its default, background integration, splits ``append`` in two
and has its own tests (``test_postgres_store.py``).
The ledger above the store (tree, checkpoints, verify) has its own tests; here the integrator is
``TreeIntegrator``, the same job done plainly.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from provenance_testkit import TreeIntegrator, expected_nodes, prepared

from provenance import merkle
from provenance.errors import LedgerUnavailable, ProvenanceError, SchemaVersionError
from provenance.postgres_store import MIGRATIONS, PostgresLedgerStore
from provenance.postgres_store import SEGMENT_BITS as PG_SEGMENT_BITS
from provenance.sqlite_store import SEGMENT_BITS, UPPER_LEVEL, SqliteLedgerStore
from provenance.store import CheckpointRow, Integration, LedgerStore, citizen_key, node_id

ORIGIN = "ztcp.test/store"
VKEY = "ztcp.test-store+01234567+AAAA"
TESTKIT = Path(__file__).parent


class SqliteHarness:
    """The SQLite driver: a file in the test's directory; raw SQL on that file is the outsider's view."""

    name = "sqlite"
    citizen_segment: int | None = 1 << SEGMENT_BITS  # the citizen index is partitioned this often

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp = tmp_path

    def make(self, name: str = "ledger") -> SqliteLedgerStore:
        return SqliteLedgerStore(self.tmp / f"{name}.db")

    def again(self, store: SqliteLedgerStore) -> SqliteLedgerStore:
        """Another handle on the same data (as another process would have)."""
        return SqliteLedgerStore(store.path)

    def settle(self) -> None:
        """After a writer's kill -9: nothing to wait for (its transaction died with the process)."""

    def copy_handle(self, path: Path) -> SqliteLedgerStore:
        """A store on what ``backup_to(path)`` wrote."""
        return SqliteLedgerStore(path)

    def _raw(self, store: SqliteLedgerStore) -> sqlite3.Connection:
        return sqlite3.connect(store.path, isolation_level=None)

    def set_schema_row(self, store: SqliteLedgerStore, value: str | None) -> None:
        """What an older (no row: version 1) or newer ztcp would have left in the file."""
        db = self._raw(store)
        if value is None:
            db.execute("DELETE FROM meta WHERE key = 'schema'")
        else:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (value,))
        db.close()

    def schema_row(self, store: SqliteLedgerStore) -> str | None:
        db = self._raw(store)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        db.close()
        return row[0] if row else None

    def make_version_1(self, store: SqliteLedgerStore) -> None:
        """Rewrite a current file in the version-1 layout: every tree node in ``nodes``."""
        db = self._raw(store)
        db.execute("INSERT INTO nodes SELECT id, hash FROM upper_nodes")
        db.execute("DELETE FROM upper_nodes")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        db.close()

    @contextlib.contextmanager
    def write_fails_midway(self, store: SqliteLedgerStore) -> Iterator[None]:
        """The disk fills up: the next writes run out of space a few pages in (SQLite's page limit,
        a real SQLITE_FULL)."""
        db = store._db
        assert db is not None
        limit = db.execute("PRAGMA max_page_count").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 4}")
        try:
            yield
        finally:
            db.execute(f"PRAGMA max_page_count = {limit}")

    def construct_source(self, store: SqliteLedgerStore) -> str:
        """Python source that builds the same store in another process."""
        return f"from provenance.sqlite_store import SqliteLedgerStore\nstore = SqliteLedgerStore({str(store.path)!r})"


class PostgresHarness:
    """The PostgreSQL driver, inline integration, on a fresh database in the session's cluster;
    another connection to that database is the outsider's view."""

    name = "postgresql"
    citizen_segment: int | None = 1 << PG_SEGMENT_BITS

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp = tmp_path
        cluster = request.getfixturevalue("pg_cluster")
        self.url = cluster.url(cluster.create_database())

    def make(self, name: str = "ledger") -> PostgresLedgerStore:
        return PostgresLedgerStore(self.url, schema=f"ztcp_{name}", integration="inline", timeout=10)

    def again(self, store: PostgresLedgerStore) -> PostgresLedgerStore:
        return PostgresLedgerStore(store.url, schema=store.schema, integration="inline", timeout=10)

    def settle(self) -> None:
        """After a writer's kill -9 its backend still finishes what it was executing: a COMMIT the
        client had sent commits after the client died. Wait until no other session on this database
        is inside a statement or a transaction, so the test reads one state, not one mid-commit."""
        deadline = time.monotonic() + 30
        with self._raw() as db:
            while time.monotonic() < deadline:
                busy = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                                  "AND state <> 'idle'").fetchone()[0]
                if not busy:
                    return
                time.sleep(0.02)
        raise AssertionError("the killed writer's session was still busy 30 s later")

    def copy_handle(self, path: Path) -> SqliteLedgerStore:
        """``backup_to`` writes the SQLite driver's file, whatever the source."""
        return SqliteLedgerStore(path)

    def _raw(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def set_schema_row(self, store: PostgresLedgerStore, value: str | None) -> None:
        """The migration history an older ztcp (version 1), a newer one (rows beyond ours) or an
        unknown branch (a migration under a name we never wrote) would have left."""
        table = f"{store.schema}.schema_migrations"
        with self._raw() as db:  # like the SQLite row, each call replaces what the last one set
            db.execute(f"DELETE FROM {table} WHERE name = 'future'")
            for version, name in MIGRATIONS:
                db.execute(f"UPDATE {table} SET name = %s WHERE version = %s", (name, version))
            if value is None or value == "1":
                db.execute(f"DELETE FROM {table} WHERE version > 1")
            elif value.isdigit():
                top = db.execute(f"SELECT max(version) FROM {table}").fetchone()[0]
                for v in range(top + 1, int(value) + 1):
                    db.execute(f"INSERT INTO {table} (version, name) VALUES (%s, 'future')", (v,))
            else:
                db.execute(f"UPDATE {table} SET name = %s WHERE version = (SELECT max(version) FROM {table})",
                           (value,))

    def schema_row(self, store: PostgresLedgerStore) -> str | None:
        with self._raw() as db:
            row = db.execute(f"SELECT version, name FROM {store.schema}.schema_migrations "
                             "ORDER BY version DESC LIMIT 1").fetchone()
        if row is None:
            return None
        version, name = row
        return str(version) if name in (dict(MIGRATIONS).get(version), "future") else name

    def make_version_1(self, store: PostgresLedgerStore) -> None:
        """Schema 1 had no sequencer row (the tree row was the writers' lock) and indexed citizens
        on the entries themselves."""
        s = store.schema
        with self._raw() as db:
            db.execute(f"DROP TABLE {s}.sequencer")
            db.execute(f"DROP TABLE {s}.citizens")
            db.execute(f"CREATE INDEX entries_citizen_seg ON {s}.entries ((seq >> 18), citizen_key, seq) "
                       "WHERE citizen_key IS NOT NULL")
            db.execute(f"DELETE FROM {s}.schema_migrations WHERE version > 1")

    @contextlib.contextmanager
    def write_fails_midway(self, store: PostgresLedgerStore) -> Iterator[None]:
        """The server ends the writer's session halfway through its transaction (what an
        administrator's ``pg_terminate_backend`` or a crashed backend does): the entries are written,
        the tree nodes wait on a lock held here, and then the session is gone."""
        holder = psycopg.connect(self.url)  # a transaction of its own, open until we leave
        holder.execute(f"LOCK TABLE {store.schema}.nodes IN SHARE MODE")
        stop, killed = threading.Event(), []

        def watch() -> None:
            with self._raw() as w:
                while not stop.is_set() and not killed:
                    for (pid,) in w.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        f"AND wait_event_type = 'Lock' AND query LIKE 'COPY {store.schema}.nodes %'"
                    ).fetchall():
                        w.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        killed.append(pid)
                    time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
            holder.rollback()
            holder.close()
        assert killed, "the write never reached the tree nodes"

    def construct_source(self, store: PostgresLedgerStore) -> str:
        return ("from provenance.postgres_store import PostgresLedgerStore\n"
                f"store = PostgresLedgerStore({store.url!r}, schema={store.schema!r}, integration='inline')")


HARNESSES = {"sqlite": SqliteHarness, "postgresql": PostgresHarness}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201 - one of the harness classes
    return HARNESSES[request.param](tmp_path, request)


@pytest.fixture
def store(harness) -> Iterator[LedgerStore]:  # noqa: ANN001
    s = harness.make()
    s.open(ORIGIN, VKEY)
    yield s
    s.close()


def _fill(store: LedgerStore, n: int, batch: int = 100, start: int = 0, **kw: object) -> list[bytes]:
    leaves = []
    for b in range(start, start + n, batch):
        items = [prepared(i, **kw) for i in range(b, min(start + n, b + batch))]
        store.append(items, TreeIntegrator())
        leaves += [p.leaf_hash for p in items]
    return leaves


def _stored_leaves(store: LedgerStore) -> list[bytes]:
    return [lh for _seq, lh, _body in store.scan()]


# -- the interface itself ------------------------------------------------------------------------------


def test_the_driver_has_every_member_of_the_protocol(store: LedgerStore) -> None:
    """No type checker runs on this repo: check the driver against the Protocol by hand."""
    members = {n for n in vars(LedgerStore) if not n.startswith("_")} | set(LedgerStore.__annotations__)
    for name in sorted(members):
        assert hasattr(store, name), f"{type(store).__name__} has no {name}"
        spec = vars(LedgerStore).get(name)
        if inspect.isfunction(spec):
            want = list(inspect.signature(spec).parameters)
            assert list(inspect.signature(getattr(type(store), name)).parameters) == want, name
    assert isinstance(store.SCHEMA_VERSION, int) and all(issubclass(e, BaseException) for e in store.read_errors)


# -- an empty store ----------------------------------------------------------------------------------


def test_an_empty_store_holds_nothing_and_records_its_version(store: LedgerStore) -> None:
    assert store.size() == 0
    assert store.schema_version() == type(store).SCHEMA_VERSION
    assert store.get(0) is None
    assert list(store.entries(0, 10)) == []
    assert store.by_event_ids(["ev-00000000"]) == {}
    assert list(store.citizen_entries(citizen_key("cr_X"), -(2**62), 2**62)) == []
    assert store.latest_checkpoint() is None and store.checkpoint_at(1) is None and list(store.checkpoints()) == []
    assert list(store.scan()) == [] and list(store.scan_nodes()) == []
    assert store.node_hashes([node_id(0, 0), node_id(1, 0)]) == {}


# -- writing and reading back -----------------------------------------------------------------------


def test_a_batch_is_written_and_read_back_exactly(store: LedgerStore) -> None:
    items = [prepared(i) for i in range(150)]
    integrate = TreeIntegrator()
    done = store.append(items, integrate)
    assert integrate.calls == 1 and integrate.sizes == [0]
    assert [r.seq for r in done.receipts] == list(range(150)) and not any(r.duplicate for r in done.receipts)
    assert [r.leaf_hash for r in done.receipts] == [p.leaf_hash for p in items]
    assert done.first_seq == 0 and list(done.written) == items and done.integration.state == 150
    assert store.size() == 150

    e = store.get(137)
    assert (e.seq, e.event_id, e.leaf_hash, e.body) == (137, items[137].event_id, items[137].leaf_hash, items[137].body)
    assert [x.seq for x in store.entries(10, 20)] == list(range(10, 20))
    assert {k: v.seq for k, v in store.by_event_ids([items[5].event_id, "nope", items[5].event_id]).items()} == {
        items[5].event_id: 5}
    rows = list(store.scan())
    assert [(s, lh, body) for s, lh, body in rows] == [(i, p.leaf_hash, p.body) for i, p in enumerate(items)]
    assert all(type(body) is bytes for _s, _lh, body in rows)  # bytes in, the same bytes out (UTF-8 inside)
    assert [s for s, _lh, _b in store.scan(140, limit=5)] == [140, 141, 142, 143, 144]
    assert list(store.scan_nodes()) == expected_nodes([p.leaf_hash for p in items])


def test_the_next_batch_starts_where_the_store_is_not_where_a_writer_thinks(harness, store: LedgerStore) -> None:  # noqa: ANN001
    """Two writers on one store (two processes, in production): each integrate sees the size under
    the lock, so seqs never collide and the tree stays one tree."""
    other = harness.again(store)
    other.open(ORIGIN, VKEY)
    try:
        leaves = _fill(store, 30, batch=10)
        integrate = TreeIntegrator(checkpoint=True)
        done = other.append([prepared(i) for i in range(30, 45)], integrate)
        assert integrate.sizes == [30] and done.first_seq == 30 and done.receipts[0].seq == 30
        leaves += _fill(store, 5, start=45)
        assert store.size() == other.size() == 50
        assert list(other.scan_nodes()) == expected_nodes(_stored_leaves(store))
        assert store.latest_checkpoint().size == 45
        assert len(leaves) == 35
    finally:
        other.close()


def test_concurrent_writers_share_one_gapless_sequence(harness, store: LedgerStore) -> None:  # noqa: ANN001
    handles = [store, harness.again(store)]
    handles[1].open(ORIGIN, VKEY)
    seqs: list[int] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        for b in range(12):
            items = [prepared(k * 10_000 + b * 10 + j) for j in range(1 + (b % 4))]
            done = handles[k % 2].append(items, TreeIntegrator())
            with lock:
                seqs.extend(r.seq for r in done.receipts)

    try:
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seqs) == list(range(len(seqs))) == list(range(store.size()))
        assert list(store.scan_nodes()) == expected_nodes(_stored_leaves(store))
    finally:
        handles[1].close()


# -- idempotency ------------------------------------------------------------------------------------


def test_duplicate_event_ids_within_and_across_batches_are_written_once(store: LedgerStore) -> None:
    first = store.append([prepared(0), prepared(1)], TreeIntegrator()).receipts

    # Within a batch: the first occurrence is written, later ones get its receipt.
    done = store.append([prepared(2), prepared(3, event_id="same"), prepared(4, event_id="same")], TreeIntegrator())
    assert [(r.seq, r.duplicate) for r in done.receipts] == [(2, False), (3, False), (3, True)]
    assert done.receipts[2].leaf_hash == done.receipts[1].leaf_hash and len(done.written) == 2

    # Across batches: the stored receipt wins, even for an item whose body differs (a retried id).
    retried = prepared(99, event_id=first[1].event_id)
    done = store.append([prepared(5), retried, prepared(0), prepared(6)], TreeIntegrator())
    assert [(r.seq, r.duplicate) for r in done.receipts] == [(4, False), (1, True), (0, True), (5, False)]
    assert done.receipts[1].leaf_hash == first[1].leaf_hash != retried.leaf_hash
    assert [p.event_id for p in done.written] == [prepared(5).event_id, prepared(6).event_id]

    # A batch of nothing new writes nothing (a driver may have asked integrate on an optimistic try).
    done = store.append([prepared(1), prepared(5), prepared(5)], TreeIntegrator())
    assert done.integration is None and list(done.written) == []
    assert [r.seq for r in done.receipts] == [1, 4, 4] and all(r.duplicate for r in done.receipts)

    assert store.size() == 6
    assert [s for s, _lh, _b in store.scan()] == list(range(6))
    assert list(store.scan_nodes()) == expected_nodes(_stored_leaves(store))


# -- nodes --------------------------------------------------------------------------------------------


def test_node_reads_return_exactly_the_stored_nodes(store: LedgerStore) -> None:
    leaves = _fill(store, 300, batch=37)  # > 2**UPPER_LEVEL leaves: nodes on both sides of the split
    every = dict(expected_nodes(leaves))
    assert list(store.scan_nodes()) == sorted(every.items())
    some = [node_id(0, 0), node_id(0, 299), node_id(5, 3), node_id(UPPER_LEVEL, 0), node_id(UPPER_LEVEL + 2, 0),
            node_id(8, 0)]
    missing = [node_id(0, 300), node_id(8, 1), node_id(3, 40)]
    got = store.node_hashes(some + missing)
    assert got == {n: every[n] for n in some}
    assert set(store.node_hashes(list(every))) == set(every)  # a big read (chunked by the driver)
    root = merkle.root_from_leaf_hashes(leaves[:256])
    assert store.node_hashes([node_id(8, 0)]) == {node_id(8, 0): root}


def test_a_node_is_written_once(store: LedgerStore) -> None:
    """The tree is append-only: an integrator that re-sends a stored node fails the whole batch
    (written after the entries, so this is also a failure midway through a batch)."""
    _fill(store, 4)
    nid = node_id(0, 3)

    def clobber(view, new):  # noqa: ANN001, ANN202
        return Integration(([nid], [bytes(32)]), ([], []))

    with pytest.raises(LedgerUnavailable):
        store.append([prepared(4), prepared(5)], clobber)
    assert store.size() == 4 and store.get(4) is None and store.by_event_ids([prepared(4).event_id]) == {}
    assert store.node_hashes([nid]) == {nid: dict(expected_nodes(_stored_leaves(store)))[nid]}


# -- checkpoints ----------------------------------------------------------------------------------------


def test_checkpoints_are_stored_with_their_batch_or_alone(store: LedgerStore) -> None:
    store.append([prepared(i) for i in range(10)], TreeIntegrator(checkpoint=True))
    store.append([prepared(i) for i in range(10, 14)], TreeIntegrator())
    late = CheckpointRow(14, b"\x01" * 32, 1_700_000_000_000_123, "note\n14\n")
    store.add_checkpoint(late)
    store.add_checkpoint(CheckpointRow(14, b"\x02" * 32, 1, "a different note\n14\n"))  # kept as first written
    store.add_checkpoint(CheckpointRow(3, b"\x03" * 32, 2, "note\n3\n"))  # sizes need not arrive in order
    assert store.latest_checkpoint() == late
    assert store.checkpoint_at(14) == late and store.checkpoint_at(11) is None
    rows = list(store.checkpoints())
    assert [r.size for r in rows] == [3, 10, 14]
    assert rows[1].root == merkle.root_from_leaf_hashes(_stored_leaves(store)[:10]) and rows[1].note == "note\n10\n"


# -- failures leave no partial batch -----------------------------------------------------------------------


def _assert_only(store: LedgerStore, n: int) -> None:
    """The store holds exactly the first n items (entries, nodes) and nothing of a failed batch."""
    assert store.size() == n
    assert [s for s, _lh, _b in store.scan()] == list(range(n))
    assert list(store.scan_nodes()) == expected_nodes([prepared(i).leaf_hash for i in range(n)])


def test_an_integrator_that_fails_rolls_the_batch_back(store: LedgerStore) -> None:
    _fill(store, 20)

    class SignerDown(Exception):
        pass

    def failing(view, new):  # noqa: ANN001, ANN202
        raise SignerDown("the integrator gave up inside the transaction")

    with pytest.raises(SignerDown):  # propagates unchanged: the caller decides what it means
        store.append([prepared(i) for i in range(20, 30)], failing)
    _assert_only(store, 20)
    assert store.append([prepared(20)], TreeIntegrator()).receipts[0].seq == 20  # the seq was not consumed


def test_a_write_that_fails_midway_leaves_no_partial_batch(harness, store: LedgerStore) -> None:  # noqa: ANN001
    _fill(store, 50)
    big = [prepared(i, body=b"x" * 2000 + str(i).encode()) for i in range(50, 1050)]
    with harness.write_fails_midway(store), pytest.raises(LedgerUnavailable, match="write failed"):
        store.append(big, TreeIntegrator(checkpoint=True))
    _assert_only(store, 50)
    assert store.latest_checkpoint() is None
    _fill(store, 10, start=50)  # the failure is over: the sequence goes on where it was
    _assert_only(store, 60)


WRITER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from provenance_testkit import TreeIntegrator, prepared
    {construct}
    store.open({origin!r}, {vkey!r})
    progress = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    n = 0
    while True:
        items = [prepared(i, body=b"y" * 500 + str(i).encode()) for i in range(n, n + {batch})]
        store.append(items, TreeIntegrator(checkpoint=True))
        n += {batch}
        os.write(progress, b"%d\\n" % n)  # after the commit: this many are durable
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.13, 0.29])
def test_kill_9_mid_write_leaves_whole_batches(harness, store: LedgerStore, tmp_path: Path, delay: float) -> None:  # noqa: ANN001
    batch = 4000
    acks = tmp_path / "acks"
    code = WRITER.format(construct=harness.construct_source(store), origin=ORIGIN, vkey=VKEY, batch=batch)
    proc = subprocess.Popen([sys.executable, "-c", code, str(TESTKIT), str(acks)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not acks.exists() or len(acks.read_text().split()) < 2):
            assert proc.poll() is None, f"writer exited with {proc.returncode}"
            time.sleep(0.01)
        time.sleep(delay)  # somewhere inside a later batch's transaction, most of the time
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    harness.settle()
    acked = int(acks.read_text().split()[-1])
    reopened = harness.again(store)
    reopened.open(ORIGIN, VKEY)
    try:
        size = reopened.size()
        assert size >= acked and size % batch == 0, f"{size} entries: a batch was cut in half"
        leaves = [prepared(i, body=b"y" * 500 + str(i).encode()).leaf_hash for i in range(size)]
        assert _stored_leaves(reopened) == leaves
        assert list(reopened.scan_nodes()) == expected_nodes(leaves)
        assert reopened.latest_checkpoint().size == size
        done = reopened.append([prepared(size)], TreeIntegrator())  # and it goes on
        assert done.receipts[0].seq == size
    finally:
        reopened.close()


# -- citizen lookups ---------------------------------------------------------------------------------------


def test_citizen_lookups_find_every_match_across_index_segments(harness, store: LedgerStore) -> None:  # noqa: ANN001
    """However a driver partitions its citizen index, a lookup must see every partition."""
    seg = harness.citizen_segment or 4096
    n = seg + 5000
    marked = {7, 1000, seg - 1, seg, n - 3}
    mine, other = "cr_MINE", "cr_OTHER"
    t0 = 1_700_000_000_000_000
    nothing = Integration(([], []), ([], []))  # nodes are not this test's business
    for start in range(0, n, 25_000):
        store.append([prepared(i, citizen=mine if i in marked else (other if i % 3 else None), time_us=t0 + i)
                      for i in range(start, min(n, start + 25_000))], lambda view, new: nothing)
    key = citizen_key(mine)
    assert [e.seq for e in store.citizen_entries(key, -(2**62), 2**62)] == sorted(marked)
    assert [e.seq for e in store.citizen_entries(key, -(2**62), 2**62, after_seq=seg - 1)] == [seg, n - 3]
    assert [e.seq for e in store.citizen_entries(key, t0 + 1000, t0 + seg)] == [1000, seg - 1]  # [since, until)
    assert all(e.body == prepared(e.seq, citizen=mine, time_us=t0 + e.seq).body
               for e in store.citizen_entries(key, -(2**62), 2**62))
    assert len(list(store.citizen_entries(citizen_key(other), t0, t0 + 3000))) == 2000 - 2  # 1000 is marked


# -- schema versions ---------------------------------------------------------------------------------------


def test_an_older_layout_is_upgraded_on_open(harness, store: LedgerStore) -> None:  # noqa: ANN001
    leaves = _fill(store, 300, batch=64)
    nodes = list(store.scan_nodes())
    store.close()
    for older in ("1", None):  # version 1 recorded, or no version row at all (files from before it)
        harness.make_version_1(store)
        harness.set_schema_row(store, older)
        again = harness.again(store)
        again.open(ORIGIN, VKEY)
        try:
            assert again.schema_version() == type(again).SCHEMA_VERSION
            assert list(again.scan_nodes()) == nodes and _stored_leaves(again) == leaves
            assert again.node_hashes([node_id(8, 0)]) == {node_id(8, 0): merkle.root_from_leaf_hashes(leaves[:256])}
            again.append([prepared(len(leaves))], TreeIntegrator())  # and it is writable
            leaves.append(prepared(len(leaves)).leaf_hash)
            nodes = list(again.scan_nodes())
            assert nodes == expected_nodes(leaves)
        finally:
            again.close()
        store = again


def test_a_newer_or_unknown_layout_is_refused_untouched(harness, store: LedgerStore) -> None:  # noqa: ANN001
    _fill(store, 5)
    store.close()
    newer = str(type(store).SCHEMA_VERSION + 1)
    for value, message in ((newer, f"schema version {newer}, newer than this ztcp"), ("banana", "'banana'")):
        harness.set_schema_row(store, value)
        again = harness.again(store)
        with pytest.raises(SchemaVersionError, match=message):
            again.open(ORIGIN, VKEY)
        again.close()
        assert harness.schema_row(store) == value  # refused before anything was written
    assert issubclass(SchemaVersionError, LedgerUnavailable)  # fail-closed paths treat it as unavailable


def test_a_store_of_another_origin_is_refused(harness, store: LedgerStore) -> None:  # noqa: ANN001
    _fill(store, 2)
    again = harness.again(store)
    with pytest.raises(ProvenanceError, match="origin"):
        again.open("ztcp.test/someone-else", VKEY)
    again.close()


# -- backups -------------------------------------------------------------------------------------------------


def test_a_backup_taken_while_writing_is_one_point_of_the_sequence(harness, store: LedgerStore,  # noqa: ANN001
                                                                   tmp_path: Path) -> None:
    batch = 500
    _fill(store, 2000, batch=batch)
    writer = harness.again(store)
    writer.open(ORIGIN, VKEY)
    stop = threading.Event()

    def write() -> None:
        n = 2000
        while not stop.is_set():
            writer.append([prepared(i) for i in range(n, n + batch)], TreeIntegrator(checkpoint=True))
            n += batch

    t = threading.Thread(target=write)
    t.start()
    try:
        time.sleep(0.05)
        store.backup_to(tmp_path / "copy.db")
    finally:
        stop.set()
        t.join()
        writer.close()
    with pytest.raises(FileExistsError):
        store.backup_to(tmp_path / "copy.db")
    copy = harness.copy_handle(tmp_path / "copy.db")
    copy.open(ORIGIN, VKEY)
    try:
        size = copy.size()
        assert size >= 2000 and size % batch == 0 and size <= store.size()
        leaves = [prepared(i).leaf_hash for i in range(size)]
        assert _stored_leaves(copy) == leaves
        assert list(copy.scan_nodes()) == expected_nodes(leaves)
    finally:
        copy.close()


def test_a_backup_needs_no_open_store(harness, store: LedgerStore, tmp_path: Path) -> None:  # noqa: ANN001
    """``ztcp backup`` copies a store that ``ztcp serve`` writes: it never opens it as a writer."""
    _fill(store, 30)
    bystander = harness.again(store)
    bystander.backup_to(tmp_path / "copy.db")
    bystander.close()
    copy = harness.copy_handle(tmp_path / "copy.db")
    copy.open(ORIGIN, VKEY)
    assert copy.size() == 30
    copy.close()


# -- lifecycle ----------------------------------------------------------------------------------------------


def test_a_closed_store_refuses_everything(store: LedgerStore) -> None:
    _fill(store, 3)
    store.close()
    with pytest.raises(LedgerUnavailable):
        store.append([prepared(3)], TreeIntegrator())
    with pytest.raises(LedgerUnavailable):
        store.size()
    with pytest.raises(LedgerUnavailable):
        store.add_checkpoint(CheckpointRow(3, bytes(32), 0, "n"))
    store.close()  # twice is fine
