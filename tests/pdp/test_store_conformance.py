"""One behaviour for every driver of the decision point's two stores (the decision log and the
signal history): the contracts ``pdp.decision_log.DecisionLogStore`` and ``pdp.signals.SignalStore``.

Every test runs against each driver in ``HARNESSES``. A harness says how to open the stores, how to
get a second handle on the same data (another process, another replica), and how to do from
outside what an older ztcp, a newer ztcp or an outage would do to the data.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.chained_log import PruneMark, verify_log
from pdp.errors import SchemaVersionError, StoreUnavailable
from pdp.pg_stores import PostgresDecisionStore, PostgresSignalStore
from pdp.sqlite_stores import SqliteDecisionStore, SqliteSignalStore
from pdp.storage import SCHEMA_TABLE

T0 = 1795399200.0


def entry(i: int, *, effect: str = "permit", subject: str = "emp-1", ts: float | None = None) -> dict:
    return {"decision_id": f"d-{i:06d}", "timestamp": "2026-11-23T02:00:00Z", "ts": ts if ts is not None else T0 + i,
            "path": "ztcp/authz/decision",
            "input": {"subject": {"id": subject}, "resource": {"citizen_ref": f"cr_{i}", "dataset": "insured_persons"},
                      "signals": {"distinct_citizens_1h": i, "travel_speed_kmh": 12.5}},
            "result": {"effect": effect, "reasons": ["ok"], "risk": {"score": 5}},
            "bundles": {"ztcp": {"revision": "r1", "digest": "sha256:00"}}}


def obs(ts: float, subject: str = "emp-1", *, device: str | None = "dev-1", citizen: str | None = "cr_1",
        dataset: str | None = "insured_persons", geo: tuple[float, float] | None = (25.03, 121.56),
        effect: str = "permit", key: str = "insured_persons/r-1/read") -> tuple:
    return (ts, subject, device, citizen, dataset, geo[0] if geo else None, geo[1] if geo else None, effect, key)


class SqliteHarness:
    name = "sqlite"
    notifies = False  # wait() only sleeps: followers poll

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    def decisions(self, *, readonly: bool = False) -> SqliteDecisionStore:
        return SqliteDecisionStore(self.tmp / "decisions.db", readonly=readonly, busy_timeout=0.2)

    def signals(self) -> SqliteSignalStore:
        return SqliteSignalStore(self.tmp / "signals.db", shared=True, busy_timeout=0.2)

    def raw(self, component: str):  # noqa: ANN201
        return sqlite3.connect(self.tmp / ("decisions.db" if component == "decision_log" else "signals.db"),
                               isolation_level=None)

    def version(self, component: str) -> int:
        db = self.raw(component)
        try:
            return db.execute(f"SELECT version FROM {SCHEMA_TABLE} WHERE component = ?", (component,)).fetchone()[0]
        finally:
            db.close()

    def set_version(self, component: str, version: int) -> None:
        db = self.raw(component)
        db.execute(f"UPDATE {SCHEMA_TABLE} SET version = ? WHERE component = ?", (version, component))
        db.close()

    def legacy_decisions(self, entries: list[dict]) -> bool:
        """A decisions.db as ztcp wrote it before stores were versioned, holding ``entries``."""
        import orjson

        db = self.raw("decision_log")
        db.executescript("""
            CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, decision_id TEXT NOT NULL UNIQUE,
              timestamp TEXT NOT NULL, ts REAL NOT NULL, subject_id TEXT, citizen_ref TEXT, effect TEXT NOT NULL,
              revision TEXT, entry BLOB NOT NULL);
            CREATE INDEX decisions_ts ON decisions(ts);
            CREATE INDEX decisions_subject ON decisions(subject_id, ts);""")
        db.executemany("INSERT INTO decisions (decision_id, timestamp, ts, subject_id, citizen_ref, effect, revision,"
                       " entry) VALUES (?,?,?,?,?,?,?,?)",
                       [(e["decision_id"], e["timestamp"], e["ts"], "emp-1", None, e["result"]["effect"], "r1",
                         orjson.dumps(e)) for e in entries])
        db.close()
        return True

    def legacy_signals(self, rows: list[tuple], devices: list[tuple]) -> bool:
        """A signals.db as ztcp wrote it before stores were versioned (observations without ids)."""
        db = self.raw("signals")
        db.executescript("""
            CREATE TABLE observations (ts REAL NOT NULL, subject TEXT NOT NULL, device TEXT, citizen_ref TEXT,
              dataset TEXT, lat REAL, lon REAL, effect TEXT NOT NULL, resource_key TEXT NOT NULL);
            CREATE INDEX observations_ts ON observations(ts);
            CREATE TABLE known_devices (subject TEXT NOT NULL, device TEXT NOT NULL, first_seen REAL NOT NULL,
              PRIMARY KEY (subject, device));
            CREATE TABLE known_datasets (subject TEXT NOT NULL, dataset TEXT NOT NULL, first_seen REAL NOT NULL,
              PRIMARY KEY (subject, dataset));""")
        db.executemany("INSERT INTO observations VALUES (?,?,?,?,?,?,?,?,?)", rows)
        db.executemany("INSERT INTO known_devices VALUES (?,?,?)", devices)
        db.close()
        return True

    def tamper(self, sql: str, args: tuple = ()) -> None:
        db = self.raw("decision_log")
        db.execute(sql, args)
        db.close()

    def version1_decisions(self, entries: list[dict]) -> None:
        """A decision log at schema version 1 (before the chain), holding ``entries``."""
        from pdp.sqlite_stores import DECISION_MIGRATIONS
        from pdp.storage import decision_row

        db = self.raw("decision_log")
        db.execute(f"CREATE TABLE {SCHEMA_TABLE} (component TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                   "applied_at TEXT NOT NULL)")
        for statement in DECISION_MIGRATIONS[0].statements:
            db.execute(statement)
        db.execute(f"INSERT INTO {SCHEMA_TABLE} VALUES ('decision_log', 1, datetime('now'))")
        db.executemany("INSERT INTO decisions (decision_id, timestamp, ts, subject_id, citizen_ref, effect, revision,"
                       " entry) VALUES (?,?,?,?,?,?,?,?)", [decision_row(e) for e in entries])
        db.close()

    @contextlib.contextmanager
    def outage(self, component: str) -> Iterator[None]:
        """Another process holds the file's write lock: writes fail (after the busy timeout)."""
        db = self.raw(component)
        db.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()


class PostgresHarness:
    name = "postgresql"
    notifies = True  # LISTEN/NOTIFY: a follower wakes at the commit

    def __init__(self, url: str) -> None:
        self.url = url

    def decisions(self, *, readonly: bool = False) -> PostgresDecisionStore:
        return PostgresDecisionStore(self.url, readonly=readonly)

    def signals(self) -> PostgresSignalStore:
        return PostgresSignalStore(self.url)

    def raw(self, component: str = ""):  # noqa: ANN201
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def version(self, component: str) -> int:
        with self.raw() as db:
            return db.execute(f"SELECT version FROM {SCHEMA_TABLE} WHERE component = %s", (component,)).fetchone()[0]

    def set_version(self, component: str, version: int) -> None:
        with self.raw() as db:
            db.execute(f"UPDATE {SCHEMA_TABLE} SET version = %s WHERE component = %s", (version, component))

    def legacy_decisions(self, entries: list[dict]) -> bool:
        return False  # PostgreSQL stores were versioned from their first release: no older layout exists

    def tamper(self, sql: str, args: tuple = ()) -> None:
        with self.raw() as db:
            db.execute(sql.replace("decisions", "decision_log").replace("?", "%s"), args)

    def version1_decisions(self, entries: list[dict]) -> None:
        """A decision log as ztcp 1 of the PostgreSQL driver wrote it (schema version 1, no chain)."""
        from pdp.pg_stores import DECISION_MIGRATIONS
        from pdp.storage import decision_row

        with self.raw() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (component TEXT PRIMARY KEY, "
                       "version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            for statement in DECISION_MIGRATIONS[0].statements:
                db.execute(statement)
            db.execute(f"INSERT INTO {SCHEMA_TABLE} (component, version) VALUES ('decision_log', 1)")
            with db.cursor() as cur:
                cur.executemany("INSERT INTO decision_log (decision_id, timestamp, ts, subject_id, citizen_ref, effect,"
                                " revision, entry) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                                [decision_row(e) for e in entries])

    def legacy_signals(self, rows: list[tuple], devices: list[tuple]) -> bool:
        return False

    @contextlib.contextmanager
    def outage(self, component: str) -> Iterator[None]:
        """The server refuses this database: its sessions are ended and no new ones are accepted."""
        import psycopg

        db_name = self.url.rsplit("/", 1)[1]
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                          "AND pid <> pg_backend_pid()", (db_name,))
        try:
            yield
        finally:
            with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true')


@pytest.fixture(params=["sqlite", "postgresql"])
def harness(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    if request.param == "sqlite":
        return SqliteHarness(tmp_path)
    return PostgresHarness(request.getfixturevalue("pg_url"))


@pytest.fixture
def dstore(harness):  # noqa: ANN001, ANN201
    store = harness.decisions()
    yield store
    store.close()


@pytest.fixture
def sstore(harness):  # noqa: ANN001, ANN201
    store = harness.signals()
    yield store
    store.close()


# -- the decision log -------------------------------------------------------------------------------

def test_decisions_round_trip_in_order_with_cursor_paging_and_counts(harness, dstore):
    written = [entry(i, effect="deny" if i % 5 == 0 else "permit") for i in range(1, 251)]
    assert dstore.cursor() == 0 and dstore.count() == 0
    dstore.write(written[:100])
    dstore.write(written[100:])
    assert dstore.get("d-000007") == written[6]  # exactly as written (JSON round trip)
    assert dstore.get("d-999999") is None
    batch, cursor = dstore.iter_since(0, limit=100)
    assert [e["decision_id"] for e in batch] == [e["decision_id"] for e in written[:100]]
    rest, cursor2 = dstore.iter_since(cursor, limit=1000)
    assert len(rest) == 150 and cursor2 > cursor == dstore.iter_since(0, limit=100)[1]
    assert dstore.iter_since(cursor2) == ([], cursor2)
    assert dstore.cursor() == cursor2
    assert dstore.count_after(0) == 250 and dstore.count_after(cursor) == 150 and dstore.count_after(cursor2) == 0
    assert [e["decision_id"] for e in dstore.entries(last=2)] == ["d-000249", "d-000250"]
    assert [e["decision_id"] for e in dstore.entries(since=T0 + 248)] == ["d-000248", "d-000249", "d-000250"]
    assert dstore.count() == 250
    assert dstore.counts_by_effect() == {"deny": 50, "permit": 200}


def test_a_retried_batch_adds_nothing(harness, dstore):
    dstore.write([entry(1), entry(2)])
    cursor = dstore.cursor()
    dstore.write([entry(1), entry(2), entry(3)])  # the first two were committed, unacknowledged
    assert dstore.count() == 3
    new, _ = dstore.iter_since(cursor)
    assert [e["decision_id"] for e in new] == ["d-000003"]


def test_another_handle_reads_what_one_wrote_and_a_reader_never_writes_the_schema(harness, dstore):
    dstore.write([entry(1)])
    reader = harness.decisions(readonly=True)
    try:
        assert reader.get("d-000001") == entry(1)
        assert reader.count() == 1
    finally:
        reader.close()


def test_concurrent_writers_never_let_a_follower_skip_an_entry(harness, dstore):
    """Four writers (replicas) append batches while a follower pages by cursor, as the SIEM does.
    The follower must see every entry exactly once: the cursor may never pass an id whose
    transaction commits later."""
    writers = [harness.decisions() for _ in range(4)]
    per_writer, batch = 300, 10
    seen: list[str] = []
    done = threading.Event()

    def write(k: int) -> None:
        for b in range(0, per_writer, batch):
            writers[k].write([entry(k * 100_000 + i) for i in range(b, b + batch)])

    def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            got, cursor = dstore.iter_since(cursor, limit=37)
            seen.extend(e["decision_id"] for e in got)
            if finished and not got:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join(60)
    for w in writers:
        w.close()
    assert len(seen) == len(set(seen)) == 4 * per_writer


def test_decision_schema_is_versioned_and_a_newer_one_is_refused(harness, dstore):
    assert harness.version("decision_log") == 2
    dstore.close()
    harness.set_version("decision_log", 99)
    with pytest.raises(SchemaVersionError, match="version 99"):
        harness.decisions()
    with pytest.raises(SchemaVersionError):
        harness.decisions(readonly=True)


def test_a_decision_log_written_before_versioning_is_adopted_with_its_data(harness):
    old = [entry(i) for i in range(1, 6)]
    if not harness.legacy_decisions(old):
        pytest.skip(f"{harness.name}: no layout older than version 1")
    store = harness.decisions()
    try:
        assert harness.version("decision_log") == 2
        assert store.entries(last=10) == old
        assert verify_log(store, None).checked == 5  # chained on upgrade
        store.write([entry(6)])
        assert [e["decision_id"] for e in store.iter_since(5)[0]] == ["d-000006"]
    finally:
        store.close()


def test_a_version_1_log_holding_data_is_chained_on_upgrade_and_keeps_chaining(harness):
    harness.version1_decisions([entry(i) for i in range(1, 8)])
    store = harness.decisions()
    try:
        assert harness.version("decision_log") == 2
        store.write([entry(7), entry(8), entry(8), entry(9)])  # a repeat is neither stored nor chained
        verdict = verify_log(store, None)
        assert (verdict.ok, verdict.checked) == (True, 9)
        assert store.chain_head()[0] == store.cursor()
    finally:
        store.close()


def test_the_chain_names_the_first_altered_removed_or_reordered_entry(harness, dstore):
    dstore.write([entry(i) for i in range(1, 11)])
    assert verify_log(dstore, None).ok
    import orjson

    forged = entry(4, effect="deny")
    harness.tamper("UPDATE decisions SET entry = ? WHERE seq = 4", (orjson.dumps(forged),))
    bad = verify_log(dstore, None)
    assert (bad.ok, bad.failure.position, bad.checked) == (False, 4, 3)
    harness.tamper("DELETE FROM decisions WHERE seq = 4")  # removing it instead: the next one breaks
    assert verify_log(dstore, None).failure.position == 5


def test_concurrent_writers_chain_one_unforked_log(harness):
    writers = [harness.decisions() for _ in range(3)]
    try:
        threads = [threading.Thread(target=lambda w=w, k=k: [w.write([entry(k * 1000 + i) for i in range(j, j + 5)])
                                                            for j in range(0, 60, 5)])
                   for k, w in enumerate(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        verdict = verify_log(writers[0], None)
        assert (verdict.ok, verdict.checked) == (True, 180)
    finally:
        for w in writers:
            w.close()


@pytest.mark.parametrize("window", [5000, 3])
def test_retention_deletes_old_unheld_entries_and_the_chain_still_verifies(harness, dstore, window, monkeypatch):
    # A small window: the pass takes several transactions, and the result is the same.
    monkeypatch.setattr("pdp.sqlite_stores.PRUNE_WINDOW", window)
    monkeypatch.setattr("pdp.pg_stores.PRUNE_WINDOW", window)
    dstore.write([entry(i) for i in range(1, 21)])
    dry = dstore.prune(T0 + 10, held=lambda ref, case: ref == "cr_4", apply=False)
    assert (dry.deleted, dry.kept_by_hold) == (8, 1)
    assert dstore.count() == 20  # a dry run deletes nothing
    signed: list[PruneMark] = []
    done = dstore.prune(T0 + 10, held=lambda ref, case: ref == "cr_4",
                        sign_mark=lambda m: signed.append(m) or f"note-{m.after}")
    assert (done.deleted, done.kept_by_hold, done.marks) == (8, 1, 2)
    assert [e["decision_id"] for e in dstore.entries(last=3)] == ["d-000018", "d-000019", "d-000020"]
    assert dstore.get("d-000004") is not None and dstore.get("d-000003") is None
    assert [(m.after, m.through, m.note) for m in dstore.prune_marks()] == [(0, 3, "note-0"), (4, 9, "note-4")]
    assert verify_log(dstore, None).ok
    # The hold is released: the next pass folds everything into one mark from the start.
    again = dstore.prune(T0 + 15)
    assert again.deleted == 6
    assert [(m.after, m.through, m.count) for m in dstore.prune_marks()] == [(0, 14, 14)]
    verdict = verify_log(dstore, None)
    assert (verdict.ok, verdict.checked, verdict.pruned) == (True, 6, 14)
    dstore.write([entry(21)])
    assert verify_log(dstore, None).ok
    harness.tamper("DELETE FROM decisions WHERE seq = 16")  # deleting outside retention is still caught
    assert verify_log(dstore, None).failure.position == 17


def test_a_signed_head_past_the_end_reveals_a_truncated_tail(harness, dstore):
    dstore.write([entry(i) for i in range(1, 6)])
    seq, lk = dstore.chain_head()
    dstore.add_signed_head(seq, "note")
    opener = lambda note, origin: (seq, lk)  # noqa: E731 - a stand-in for the signature check
    assert verify_log(dstore, opener).ok
    harness.tamper("DELETE FROM decisions WHERE seq >= 4")
    bad = verify_log(dstore, opener)
    assert not bad.ok and "truncated" in bad.failure.reason and bad.failure.position == 4


def test_decision_writes_fail_as_store_unavailable_then_resume_by_themselves(harness, dstore):
    dstore.write([entry(1)])
    with harness.outage("decision_log"), pytest.raises(StoreUnavailable):
        dstore.write([entry(2)])
    deadline = time.monotonic() + 10
    while True:  # the first attempt after an outage may still find the old session dead
        try:
            dstore.write([entry(2), entry(3)])
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert dstore.count() == 3


# -- the signal history -----------------------------------------------------------------------------

def test_observations_load_in_time_order_and_only_permits_make_devices_and_datasets_known(harness, sstore):
    sstore.append("A", [(1, obs(T0 + 2, device="dev-1", effect="permit")),
                        (2, obs(T0 + 1, device="dev-2", effect="deny", dataset="claims")),
                        (3, obs(T0 + 3, device="unknown", effect="permit")),
                        (4, obs(T0 - 9000, subject="emp-2", effect="step_up"))])
    rows, devices, datasets, cursor = sstore.load(T0 - 60)
    assert [r[0] for r in rows] == [T0 + 1, T0 + 2, T0 + 3]
    assert rows[0] == obs(T0 + 1, device="dev-2", effect="deny", dataset="claims")
    assert set(devices) == {("emp-1", "dev-1")}  # not the denied dev-2, never the unknown device
    assert set(datasets) == {("emp-1", "insured_persons")}
    assert cursor > 0


def test_a_retried_observation_batch_adds_nothing(harness, sstore):
    batch = [(1, obs(T0)), (2, obs(T0 + 1))]
    sstore.append("A", batch)
    sstore.append("A", [*batch, (3, obs(T0 + 2))])
    sstore.append("B", [(1, obs(T0 + 3))])  # same oseq, another origin: a different observation
    assert len(sstore.load(0)[0]) == 4


def test_after_returns_other_origins_in_id_order_and_pages(harness, sstore):
    other = harness.signals()
    try:
        sstore.append("A", [(i, obs(T0 + i)) for i in range(1, 4)])
        other.append("B", [(i, obs(T0 + 10 + i, subject="emp-2")) for i in range(1, 6)])
        sstore.append("A", [(4, obs(T0 + 20))])
        rows, cursor, complete = sstore.after(0, "A")
        assert complete and [r[1][0] for r in rows] == [T0 + 11 + i for i in range(5)]
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)
        assert cursor >= rows[-1][0]  # past A's own newest row too: the next call rescans nothing
        assert sstore.after(cursor, "A") == ([], cursor, True)
        page, c1, complete = sstore.after(0, "A", limit=2)
        assert len(page) == 2 and not complete and c1 == page[-1][0]
        rest, _, complete = sstore.after(c1, "A", limit=2)
        assert len(rest) == 2 and not complete
        assert [r[1] for r in sstore.subject_after("emp-2", page[0][0], "A")] == [r[1] for r in rows[1:]]
        assert sstore.subject_after("emp-1", 0, "A") == []  # emp-1's rows are all A's own
    finally:
        other.close()


def test_ids_never_go_back_after_everything_was_pruned(harness, sstore):
    sstore.append("A", [(1, obs(T0)), (2, obs(T0 + 1))])
    _, _, _, before = sstore.load(0)
    sstore.prune(T0 + 3600)
    assert sstore.load(0)[0] == []
    sstore.append("B", [(1, obs(T0 + 7200))])
    rows, cursor, _ = sstore.after(before, "A")
    assert [r[1][0] for r in rows] == [T0 + 7200] and rows[0][0] > before


def test_concurrent_appenders_never_let_a_follower_skip_an_observation(harness, sstore):
    writers = [harness.signals() for _ in range(4)]
    per_writer = 200
    seen: list[tuple] = []
    done = threading.Event()

    def write(k: int) -> None:
        for b in range(0, per_writer, 8):
            writers[k].append(f"w{k}", [(i, obs(T0 + i, subject=f"s{k}")) for i in range(b + 1, b + 9)])

    def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            got, cursor, _ = sstore.after(cursor, "follower", limit=29)
            seen.extend((r[1][1], r[1][0]) for r in got)
            if finished and not got:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join(60)
    for w in writers:
        w.close()
    assert len(seen) == len(set(seen)) == 4 * per_writer


def test_wait_returns_when_another_origin_commits(harness, sstore):
    other = harness.signals()
    try:
        timer = threading.Timer(0.3, lambda: other.append("B", [(1, obs(T0))]))
        started = time.monotonic()
        timer.start()
        sstore.wait(3.0 if harness.notifies else 0.5, "A")
        waited = time.monotonic() - started
        timer.join()
        if harness.notifies:
            assert 0.25 < waited < 2.0  # woken by the commit, not by the timeout
        assert [r[1] for r in sstore.after(0, "A")[0]] == [obs(T0)]
        started = time.monotonic()
        sstore.append("A", [(1, obs(T0 + 1))])  # its own commit does not wake it
        sstore.wait(0.4, "A")
        assert time.monotonic() - started >= 0.35
    finally:
        other.close()


def test_signal_schema_is_versioned_and_a_newer_one_is_refused(harness, sstore):
    assert harness.version("signals") == (2 if harness.name == "sqlite" else 1)
    sstore.close()
    harness.set_version("signals", 99)
    with pytest.raises(SchemaVersionError, match="signals store has schema version 99"):
        harness.signals()


def test_a_signal_history_written_before_versioning_is_upgraded_with_its_data(harness):
    old = [obs(T0 + i, citizen=f"cr_{i}") for i in range(5)]
    if not harness.legacy_signals(old, [("emp-1", "dev-1", T0)]):
        pytest.skip(f"{harness.name}: no layout older than version 1")
    store = harness.signals()
    try:
        assert harness.version("signals") == 2
        rows, devices, _, cursor = store.load(0)
        assert rows == old and devices == [("emp-1", "dev-1")] and cursor == 5
        store.append("A", [(1, obs(T0 + 9))])
        got, _, _ = store.after(cursor, "B")
        assert [r[0] for r in got] == [6]  # ids continue after the upgraded rows
    finally:
        store.close()


def test_signal_writes_fail_as_store_unavailable_then_resume_by_themselves(harness, sstore):
    sstore.append("A", [(1, obs(T0))])
    with harness.outage("signals"), pytest.raises(StoreUnavailable):
        sstore.append("A", [(2, obs(T0 + 1))])
    deadline = time.monotonic() + 10
    while True:
        try:
            sstore.append("A", [(2, obs(T0 + 1))])
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert len(sstore.load(0)[0]) == 2


@pytest.mark.parametrize("decision_id", ["d-000001", "0190abcd-1234-7000-8000-000000000000", 'a"b\\c', "é-ü", ""])
def test_the_fast_link_is_the_contract_link(decision_id: str) -> None:
    from contracts.log_chain import GENESIS, link
    from pdp.decision_chain import chain_record, fast_link

    assert fast_link(GENESIS, decision_id, b'{"x":1}') == link(GENESIS, chain_record(decision_id, b'{"x":1}'))


def test_a_reader_gives_the_newest_seq_and_the_backlog_after_a_cursor(harness, dstore):
    """What syslog forwarding of decisions follows (server.delivery.decision_feed)."""
    from pdp.decision_log import DecisionLog

    dstore.write([entry(i) for i in range(1, 8)])
    reader = DecisionLog.reader(dstore)
    assert reader.last_seq() == dstore.cursor() == 7
    assert (reader.count_after(0), reader.count_after(5), reader.count_after(7)) == (7, 2, 0)
