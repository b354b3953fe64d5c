"""The PostgreSQL ledger store as ztcp runs it: background integration, many processes, failures.

The shared contract (inline integration) is in ``test_store_conformance.py``. Here: writers that
only sequence and one integrator among several processes; N processes appending at once; kill -9 of
a writer and of the integrator; a hung integrator; PostgreSQL itself restarted; an old schema holding
a ledger; backups that include acknowledged-but-not-yet-integrated events; and what a message may
say about the URL. Every process is real (subprocesses of this interpreter), every server is real.
"""

from __future__ import annotations

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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from provenance_testkit import TreeIntegrator, cref, expected_nodes, make_event, prepared

from provenance import Ledger, LedgerUnavailable, Recorder, UnknownEntry, merkle
from provenance.postgres_store import PostgresLedgerStore, _migration_sql, redact_dsn
from provenance.sqlite_store import SqliteLedgerStore
from provenance.store import citizen_key
from provenance.trace import trace_citizen
from provenance.verify import verify_ledger

ORIGIN = "ztcp.test/pg-ledger"
TESTKIT = Path(__file__).parent
TAKEOVER_LIMIT = 10.0  # seconds from an integrator's death to another integrating (issue #12)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _ledger(url: str, key: Ed25519PrivateKey, *, integrator: bool = False, **store_kw: object) -> Ledger:
    store = PostgresLedgerStore(url, **store_kw)  # type: ignore[arg-type]
    return Ledger(store=store, signing_key=key, origin=ORIGIN, checkpoint_every=100, integrator=integrator)


def _wait(cond, timeout: float, what: str, step: float = 0.02) -> float:  # noqa: ANN001
    """Poll ``cond`` until true; returns the seconds it took (fails the test after ``timeout``)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(step)
    return time.monotonic() - t0


def _check_whole(ledger: Ledger, acked: dict[str, tuple[int, bytes]]) -> None:
    """Everything acknowledged is stored as acknowledged, the sequence is gapless and duplicate-free,
    the tree is complete and every check of ``verify`` passes."""
    assert ledger.integrate_pending(timeout=30)
    ledger.refresh()
    stored = ledger.get_by_event_ids(list(acked))
    assert {eid: (e.seq, e.leaf_hash) for eid, e in stored.items()} == acked
    seqs = [s for s, _lh, _b in ledger.store.scan()]
    assert seqs == list(range(len(seqs))) == list(range(ledger.size))
    assert ledger.store.sequenced_size() == ledger.size  # type: ignore[attr-defined]
    report = verify_ledger(ledger)
    assert report.size == ledger.size >= len(acked)


# -- background integration in one process --------------------------------------------------------------


def test_writers_only_sequence_and_the_tree_follows(pg_dsn: str, key: Ed25519PrivateKey) -> None:
    """An append is acknowledged once its entries are committed; readers of the tree see it once the
    integrator has extended the tree over it; a lookup by id finds it at once."""
    writer = _ledger(pg_dsn, key)  # no integrator in this process
    try:
        events = [make_event(i) for i in range(30)]
        receipts = writer.append(events)
        assert [r.seq for r in receipts] == list(range(30))
        store = writer.store
        assert store.sequenced_size() == 30 and store.size() == 0  # type: ignore[attr-defined]
        assert {e.seq for e in writer.get_by_event_ids([ev.event_id for ev in events]).values()} == set(range(30))
        with pytest.raises(UnknownEntry):
            writer.get(0)
        assert list(store.scan()) == [] and writer.citizen_entries(cref(0)) == []

        again = writer.append([events[3], make_event(30)])  # idempotent before integration too
        assert [(r.seq, r.duplicate) for r in again] == [(3, True), (30, False)]

        cp = writer.checkpoint()  # integrates first (no integrator is running: this process does it)
        assert cp.size == 31 == store.size() == writer.size
        leaves = [merkle.leaf_hash(e.body) for e in writer.entries()]
        assert cp.root == merkle.root_from_leaf_hashes(leaves)
        merkle.verify_inclusion(leaves[17], 17, 31, writer.inclusion_proof(17, 31), cp.root)
        assert [e.seq for e in writer.citizen_entries(cref(0))] == [i for i in range(31) if i % 3 == 0]
        assert verify_ledger(writer).size == 31
    finally:
        writer.close()


def test_small_and_large_batches_sequence_alike_and_integrate_whole(pg_dsn: str) -> None:
    """A few events go in one statement, a big batch by COPY: one sequence, the same duplicate rules
    (a stored id gets its stored receipt, a repeat within the batch its first occurrence's), and the
    integrator's tree and citizen index over all of them."""
    store = PostgresLedgerStore(pg_dsn)
    store.open(ORIGIN, "vkey")
    try:
        marked = {1, 50, 104}
        item = lambda i: prepared(i, citizen="cr_MINE" if i in marked else None)  # noqa: E731
        assert [r.seq for r in store.append([item(0), item(1), item(2)], TreeIntegrator()).receipts] == [0, 1, 2]
        done = store.append([item(i) for i in range(3, 103)], TreeIntegrator())
        assert done.integration is None and [r.seq for r in done.receipts] == list(range(3, 103))
        done = store.append([item(103), item(1)], TreeIntegrator())  # small, with a stored id
        assert [(r.seq, r.duplicate) for r in done.receipts] == [(103, False), (1, True)]
        done = store.append([item(104), item(104)], TreeIntegrator())  # small, repeating itself
        assert [(r.seq, r.duplicate) for r in done.receipts] == [(104, False), (104, True)]
        assert store.sequenced_size() == 105 and store.size() == 0
        committed = []
        assert store.integrate_pending(TreeIntegrator(), committed.append)
        assert store.size() == 105 and sum(len(d.written) for d in committed) == 105
        leaves = [item(i).leaf_hash for i in range(105)]
        assert [lh for _s, lh, _b in store.scan()] == leaves
        assert list(store.scan_nodes()) == expected_nodes(leaves)
        assert [e.seq for e in store.citizen_entries(citizen_key("cr_MINE"), -(2**62), 2**62)] == sorted(marked)
    finally:
        store.close()


def test_the_integrator_extends_the_tree_within_a_second_of_an_append(pg_dsn: str, key: Ed25519PrivateKey) -> None:
    with _ledger(pg_dsn, key, integrator=True) as ledger:
        rec = Recorder(ledger)
        try:
            _wait(lambda: ledger.store.integrator_status()["role"] == "leader", 5, "integrator role")  # type: ignore[attr-defined]
            delays = []
            for i in range(20):
                r = rec.record(make_event(i))
                t0 = time.monotonic()
                _wait(lambda r=r: ledger.store.size() > r.seq, 5, "integration", step=0.001)
                delays.append(time.monotonic() - t0)
                ledger.inclusion_proof(r.seq, r.seq + 1)  # its proof exists (from the stored nodes)
            delays.sort()
            print(f"append → in the tree: p50 {delays[10] * 1e3:.1f} ms, max {delays[-1] * 1e3:.1f} ms")
            assert delays[10] < 1.0
            assert ledger.size == 20  # the integrating process's own state follows its commits
            rows = list(ledger.raw_checkpoints())
            assert ledger.checkpoint().size == 20 and len(rows) <= 1
        finally:
            rec.close()


def test_sessions_are_durable_whatever_the_database_default(pg_cluster, key: Ed25519PrivateKey) -> None:  # noqa: ANN001
    name = pg_cluster.create_database()
    with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    with _ledger(pg_cluster.url(name), key) as ledger:
        store = ledger.store
        with store._conn("test") as conn:  # type: ignore[attr-defined]
            assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        assert store.fsync_off  # the test cluster runs without fsync, and the store says so  # type: ignore[attr-defined]


# -- many processes -----------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    sys.path.insert(0, {testkit!r})
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from provenance import Ledger, Recorder
    from provenance.postgres_store import PostgresLedgerStore
    from provenance_testkit import make_event

    url, name, acks, threads, count, batch = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex({key!r}))
    store = PostgresLedgerStore(url, standby_poll=0.2, timeout=10)
    ledger = Ledger(store=store, signing_key=key, origin={origin!r}, checkpoint_every=200,
                    integrator=name.startswith("int"))
    rec = Recorder(ledger)
    out = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(out, b"ready\\n")

    def work(t):
        for i in range(0, count, batch):
            events = [make_event(i + j, record_id=f"{{name}}-{{t}}-{{i + j}}") for j in range(batch)]
            receipts = ledger.append(events) if batch > 1 else [rec.record(events[0])]
            # after the commit: these are acknowledged
            os.write(out, b"".join(b"%d %s %s\\n" % (r.seq, r.event_id.encode(), r.leaf_hash.hex().encode())
                                   for r in receipts))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    os.write(out, b"done\\n")
    while count == 0 or name.startswith("int"):
        time.sleep(1)  # an integrator stays a candidate until it is killed
    rec.close()
    ledger.close()
    """
)


class Children:
    """Subprocesses running a real Ledger on the database; each writes what it has acknowledged."""

    def __init__(self, tmp_path: Path, url: str, key: Ed25519PrivateKey) -> None:
        self.tmp, self.url = tmp_path, url
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
        self.code = CHILD.format(testkit=str(TESTKIT), key=raw, origin=ORIGIN)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *, threads: int = 0, count: int = 0, batch: int = 1) -> subprocess.Popen:
        url = f"{self.url}?application_name=ztcp-{name}"  # pg_stat_activity tells the processes apart
        proc = subprocess.Popen([sys.executable, "-c", self.code, url, name, str(self.acks(name)), str(threads),
                                 str(count), str(batch)])
        self.procs[name] = proc
        _wait(lambda: self.acks(name).exists() or proc.poll() is not None, 60, f"{name} starting")
        return proc

    def acks(self, name: str) -> Path:
        return self.tmp / f"{name}.acks"

    def lines(self, name: str) -> list[str]:
        return self.acks(name).read_text().splitlines() if self.acks(name).exists() else []

    def acked(self) -> dict[str, tuple[int, bytes]]:
        out = {}
        for name in self.procs:
            for line in self.lines(name):
                parts = line.split()
                if len(parts) == 3:
                    out[parts[1]] = (int(parts[0]), bytes.fromhex(parts[2]))
        return out

    def done(self, name: str) -> bool:
        return "done" in self.lines(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def children(tmp_path: Path, pg_dsn: str, key: Ed25519PrivateKey) -> Iterator[Children]:
    kids = Children(tmp_path, pg_dsn, key)
    try:
        yield kids
    finally:
        kids.stop()


def _integrator_holder(url: str) -> str | None:
    """The application name of the session holding the integrator's advisory lock, if any."""
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    return row[0] if row else None


def test_n_processes_appending_at_once_share_one_gapless_sequence(children: Children, pg_dsn: str,
                                                                  key: Ed25519PrivateKey) -> None:
    # Four processes, two threads each, all candidates for integration: single events through the
    # Recorder (group commit) and batches of 25, interleaved across processes by the sequencer's lock.
    for n in range(4):
        children.start(f"int{n}", threads=2, count=150, batch=1 if n % 2 else 25)
    _wait(lambda: all(children.done(f"int{n}") for n in range(4)), 240, "writers finishing")
    acked = children.acked()
    assert len(acked) == 4 * 2 * 150
    assert sorted(s for s, _lh in acked.values()) == list(range(len(acked)))  # gap-free, duplicate-free
    holders = {_integrator_holder(pg_dsn)}
    assert holders <= {f"ztcp-int{n}" for n in range(4)}  # one of them integrates
    with _ledger(pg_dsn, key) as ledger:
        _check_whole(ledger, acked)
        assert ledger.latest_checkpoint() is not None


@pytest.mark.parametrize("delay", [0.0, 0.11, 0.23])
def test_kill_9_of_a_writer_loses_nothing_acknowledged(children: Children, pg_dsn: str, key: Ed25519PrivateKey,
                                                       delay: float) -> None:
    batch = 200
    proc = children.start("writer", threads=1, count=10**6, batch=batch)
    _wait(lambda: len(children.lines("writer")) > 2 * batch, 60, "two batches acknowledged")
    time.sleep(delay)  # most of the time inside a later batch's transaction
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    acked = children.acked()
    with _ledger(pg_dsn, key) as ledger:
        sequenced = ledger.store.sequenced_size()  # type: ignore[attr-defined]
        assert sequenced >= len(acked) and sequenced % batch == 0, f"{sequenced} entries: a batch was cut"
        _check_whole(ledger, acked)
        assert ledger.append([make_event(0)])[0].seq == sequenced  # and it goes on


def _appender(ledger: Ledger, stop: threading.Event, acked: dict, errors: list) -> threading.Thread:
    """Records single events until stopped; keeps what was acknowledged and what failed (and when)."""
    rec = Recorder(ledger)

    def run() -> None:
        i = 0
        while not stop.is_set():
            try:
                r = rec.record(make_event(i, record_id=f"main-{i}"))
                acked[r.event_id] = (r.seq, r.leaf_hash)
            except LedgerUnavailable as exc:
                errors.append((time.monotonic(), str(exc)))
                time.sleep(0.05)
            i += 1
            time.sleep(0.002)
        rec.close()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_the_integrator_killed_another_takes_over(children: Children, pg_dsn: str, key: Ed25519PrivateKey) -> None:
    for name in ("intA", "intB"):
        children.start(name)
    _wait(lambda: _integrator_holder(pg_dsn) is not None, 30, "an integrator")
    writer = _ledger(pg_dsn, key)
    stop, acked, errors = threading.Event(), {}, []
    appender = _appender(writer, stop, acked, errors)
    try:
        _wait(lambda: len(acked) > 50 and writer.store.size() > 20, 30, "integration running")
        leader = _integrator_holder(pg_dsn).removeprefix("ztcp-")  # type: ignore[union-attr]
        other = "intB" if leader == "intA" else "intA"
        t0 = time.monotonic()
        os.kill(children.procs[leader].pid, signal.SIGKILL)
        _wait(lambda: _integrator_holder(pg_dsn) == f"ztcp-{other}", TAKEOVER_LIMIT, "takeover")
        target = writer.store.sequenced_size()  # type: ignore[attr-defined]
        _wait(lambda: writer.store.size() >= target, TAKEOVER_LIMIT, "integration resuming")
        took = time.monotonic() - t0
        print(f"integrator killed → the standby integrating again after {took:.2f} s")
        assert took < TAKEOVER_LIMIT
    finally:
        stop.set()
        appender.join()
    assert not errors  # writers never noticed
    _check_whole(writer, acked)
    writer.close()


def test_a_hung_integrator_is_cut_off_and_replaced(children: Children, pg_dsn: str, key: Ed25519PrivateKey) -> None:
    """SIGSTOP: the process lives but says nothing. The server ends its idle session (5 s), which
    frees the lock; when it resumes it finds its session gone and stays a standby."""
    for name in ("intA", "intB"):
        children.start(name)
    _wait(lambda: _integrator_holder(pg_dsn) is not None, 30, "an integrator")
    writer = _ledger(pg_dsn, key)
    stop, acked, errors = threading.Event(), {}, []
    appender = _appender(writer, stop, acked, errors)
    leader = _integrator_holder(pg_dsn).removeprefix("ztcp-")  # type: ignore[union-attr]
    other = "intB" if leader == "intA" else "intA"
    try:
        os.kill(children.procs[leader].pid, signal.SIGSTOP)
        took = _wait(lambda: _integrator_holder(pg_dsn) == f"ztcp-{other}", TAKEOVER_LIMIT, "takeover", step=0.1)
        print(f"integrator hung → the standby holds the role after {took:.2f} s")
        os.kill(children.procs[leader].pid, signal.SIGCONT)
        time.sleep(2)  # the old holder wakes up, finds its session closed, and becomes a standby
        assert _integrator_holder(pg_dsn) == f"ztcp-{other}"
        target = writer.store.sequenced_size()  # type: ignore[attr-defined]
        _wait(lambda: writer.store.size() >= target, TAKEOVER_LIMIT, "integration going on")
    finally:
        stop.set()
        appender.join()
    _check_whole(writer, acked)
    writer.close()


# -- the server itself goes away ------------------------------------------------------------------------------


def test_postgresql_restarted_mid_run_appends_fail_closed_then_resume(pg_factory, key: Ed25519PrivateKey) -> None:  # noqa: ANN001
    cluster = pg_factory()
    url = cluster.url(cluster.create_database())
    ledger = _ledger(url, key, integrator=True, timeout=2)
    stop, acked, errors = threading.Event(), {}, []
    appender = _appender(ledger, stop, acked, errors)
    try:
        _wait(lambda: len(acked) > 50, 30, "appending")
        cluster.stop("immediate")  # a crash, as far as any client can tell
        t_down = time.monotonic()
        _wait(lambda: len(errors) >= 3, 30, "appends failing")
        before = len(acked)
        time.sleep(1.0)
        assert len(acked) == before  # nothing is acknowledged while the server is away
        cluster.start()
        t_up = time.monotonic()
        resumed = _wait(lambda: len(acked) > before + 20, 30, "appends resuming")
        print(f"down {t_up - t_down:.1f} s, {len(errors)} appends refused; acknowledged again {resumed:.2f} s "
              "after the server was back")
        target = ledger.store.sequenced_size()  # type: ignore[attr-defined]
        _wait(lambda: ledger.store.size() >= target, 30, "the integrator back at work")
    finally:
        stop.set()
        appender.join()
    assert all("ledger" in why for _t, why in errors)
    _check_whole(ledger, acked)
    ledger.close()


def test_an_unreachable_server_refuses_at_once_and_names_no_password(key: Ed25519PrivateKey) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    secret = "pw-" + os.urandom(8).hex()
    for url in (f"postgresql://ztcp:{secret}@127.0.0.1:{port}/ledger",
                f"postgresql://ztcp@127.0.0.1:{port}/ledger?password={secret}",
                f"host=127.0.0.1 port={port} user=ztcp password={secret} dbname=ledger"):
        store = PostgresLedgerStore(url, timeout=1)
        assert store.location == f"postgresql://ztcp@127.0.0.1:{port}/ledger (schema ztcp_ledger)"
        assert secret not in repr(store)
        t0 = time.monotonic()
        with pytest.raises(LedgerUnavailable) as exc:
            Ledger(store=store, signing_key=key, origin=ORIGIN)
        assert time.monotonic() - t0 < 10
        assert secret not in str(exc.value) and f"127.0.0.1:{port}/ledger" in str(exc.value)
        with pytest.raises(LedgerUnavailable) as exc:
            store.backup_to(Path("/nonexistent/never-written.db"))
        assert secret not in str(exc.value)
    assert redact_dsn("not a url at all ===") == "postgresql://(unparsable URL)"


# -- schema versions and backups -----------------------------------------------------------------------------


def test_a_schema_1_database_holding_a_ledger_is_upgraded_on_open(pg_dsn: str, key: Ed25519PrivateKey,
                                                                   tmp_path: Path) -> None:
    """Schema 1 integrated every append inside its own transaction and had no sequencer row. A
    ledger written that way (rows of a real ledger, signed checkpoints included) is upgraded by the
    next open, verifies, and the sequence goes on where it ended."""
    with Ledger(tmp_path / "src.db", key, ORIGIN, checkpoint_every=40) as src:
        for i in range(0, 150, 30):
            src.append([make_event(j) for j in range(i, i + 30)])
        src.checkpoint()
    lite = sqlite3.connect(tmp_path / "src.db")
    tables = {t: lite.execute(f"SELECT * FROM {t}").fetchall() for t in ("entries", "nodes", "upper_nodes",
                                                                         "checkpoints")}
    vkey = lite.execute("SELECT value FROM meta WHERE key = 'verifier_key'").fetchone()[0]
    lite.close()
    with psycopg.connect(pg_dsn, autocommit=True) as db, db.transaction():  # what ztcp of schema 1 left
        db.execute("CREATE SCHEMA ztcp_ledger")
        db.execute("CREATE TABLE ztcp_ledger.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                   "applied_at timestamptz NOT NULL DEFAULT now())")
        db.execute("SET LOCAL search_path TO ztcp_ledger")
        db.execute(_migration_sql(1, "ledger"))
        db.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'ledger')")
        db.execute("INSERT INTO meta VALUES ('origin', %s), ('verifier_key', %s)", (ORIGIN, vkey))
        cur = db.cursor()
        cur.executemany("INSERT INTO entries VALUES (%s, %s, %s, %s, %s, %s, %s)", tables["entries"])
        cur.executemany("INSERT INTO nodes VALUES (%s, %s)", tables["nodes"])
        cur.executemany("INSERT INTO upper_nodes VALUES (%s, %s)", tables["upper_nodes"])
        cur.executemany("INSERT INTO checkpoints VALUES (%s, %s, %s, %s)", tables["checkpoints"])
        db.execute("UPDATE tree SET size = 150")
    with _ledger(pg_dsn, key) as ledger:
        assert ledger.store.schema_version() == 2
        assert verify_ledger(ledger).size == 150 and ledger.latest_checkpoint().size == 150
        receipts = ledger.append([make_event(j) for j in range(150, 160)])
        assert [r.seq for r in receipts] == list(range(150, 160))
        assert ledger.checkpoint().size == 160
        assert verify_ledger(ledger).checkpoints == 4  # 60, 120, 150 from schema 1, and 160
        tr = trace_citizen(ledger, cref(0), checkpoint=ledger.latest_checkpoint())
        assert len(tr.events) == 54 and all(e.verified for e in tr.events)
    with psycopg.connect(pg_dsn) as db:
        assert db.execute("SELECT version, name FROM ztcp_ledger.schema_migrations ORDER BY version").fetchall() == [
            (1, "ledger"), (2, "sequencer")]


def test_a_backup_holds_every_acknowledged_event_integrated_or_not(pg_dsn: str, key: Ed25519PrivateKey,
                                                                   tmp_path: Path) -> None:
    with _ledger(pg_dsn, key) as ledger:
        ledger.append([make_event(i) for i in range(120)])
        ledger.checkpoint()  # 120 in the tree, signed
        ledger.append([make_event(i) for i in range(120, 200)])  # 80 acknowledged, waiting
        assert ledger.store.size() == 120
        ledger.store.backup_to(tmp_path / "copy.db")
        ledger.integrate_pending()
        nodes = list(ledger.store.scan_nodes())
    copy = Ledger(store=SqliteLedgerStore(tmp_path / "copy.db"), signing_key=key, origin=ORIGIN)
    try:
        report = verify_ledger(copy)
        assert (report.size, report.latest_checkpoint_size, report.unsigned_tail) == (200, 120, 80)
        assert list(copy.store.scan_nodes()) == nodes  # the nodes the integrator wrote later, computed alike
    finally:
        copy.close()
