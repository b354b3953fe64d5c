"""One suite for both drivers of the alert store (siem_rules.AlertBackend): SQLite (siem.db) and
PostgreSQL (ZTCP_DATABASE_URL, a real server started by the fixtures).

Covers the deterministic upsert, closed alerts staying closed, triage history with its actor and
self-review, the hash chain over the history (tampering by SQL is caught and named), retention
pruning with legal holds, and the delivery / SIEM feeds read from the history."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from siem_rules import AlertBackend, AlertNotFound, AlertStore, SiemError, Watermark, connect
from siem_rules.alerts import Hit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.alert_rules import Rule  # noqa: E402

DRIVERS = ["sqlite", "postgresql"]


RULE = Rule()
CRITICAL = Rule(id="r-2", name="critical_thing", title="Critical", level="critical")


@dataclass
class Store:
    store: Any
    sql: Callable[[str], None]  # run SQL directly on the database (the tamperer's tool)
    reopen: Callable[[], Any]  # a second handle on the same alerts (another process or replica)


@pytest.fixture(params=DRIVERS)
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # noqa: ANN001
    if request.param == "sqlite":
        path = tmp_path / "siem.db"
        conn = connect(path)
        store = AlertStore(conn)

        def run(stmt: str) -> None:
            other = connect(path)
            other.execute(stmt)
            other.close()

        handles = [store]

        def reopen() -> AlertStore:
            handles.append(AlertStore(connect(path)))
            return handles[-1]

        yield Store(store, run, reopen)
        for h in handles:
            h.close()
        return
    dsn = request.getfixturevalue("pg_dsn")
    import psycopg

    from siem_rules.pg_alerts import PostgresAlertStore

    stores = [PostgresAlertStore(dsn)]

    def run_pg(stmt: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(stmt)  # type: ignore[arg-type]

    def reopen_pg() -> PostgresAlertStore:
        stores.append(PostgresAlertStore(dsn))
        return stores[-1]

    yield Store(stores[0], run_pg, reopen_pg)
    for s in stores:
        s.close()


def hit(group: dict[str, Any], *events: tuple[float, str], gap: float = 600.0) -> Hit:
    ts = [t for t, _ in events]
    return Hit(group=group, window_start=min(ts), window_end=max(ts), evidence=list(events), gap=gap)


NOW = "2026-01-10T00:00:00Z"


def test_it_is_an_alert_backend(backend: Store) -> None:
    assert isinstance(backend.store, AlertBackend)


def test_upsert_is_deterministic_and_idempotent(backend: Store) -> None:
    s = backend.store
    touched = s.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"), (200.0, "e2"))], NOW)
    assert len(touched) == 1
    (alert_id,) = touched
    # The same evidence again (a re-run, a new leader re-reading the window): nothing changes.
    assert s.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"), (200.0, "e2"))], NOW) == set()
    assert s.count() == 1
    # New evidence within the gap extends the same alert.
    assert s.merge(RULE, [hit({"actor": "emp-1"}, (300.0, "e3"))], NOW) == {alert_id}
    a = s.get(alert_id)
    assert a.event_count == 3 and a.evidence == ["e1", "e2", "e3"] and a.status == "open"
    # Another handle (process, replica) computes the same id for the same episode.
    other = backend.reopen()
    assert other.merge(RULE, [hit({"actor": "EMP-1"}, (100.0, "e1"))], NOW) == set()
    assert other.get(alert_id).event_count == 3
    with pytest.raises(AlertNotFound):
        s.get("al_nope")


def test_a_closed_alert_is_never_reopened_or_extended_by_a_run(backend: Store) -> None:
    s = backend.store
    (alert_id,) = s.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"))], NOW)
    s.set_status(alert_id, "closed", actor="soc-1")
    # Re-processing the same events: the closed alert keeps its status and evidence.
    assert s.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"), (150.0, "e2"))], NOW) == set()
    assert s.get(alert_id).status == "closed" and s.get(alert_id).event_count == 1
    # A recurrence after closure is a new alert.
    new = s.merge(RULE, [hit({"actor": "emp-1"}, (400.0, "e4"))], NOW)
    assert len(new) == 1 and alert_id not in new
    assert {a.status for a in s.list()} == {"closed", "open"}
    assert [a.alert_id for a in s.list(status="closed")] == [alert_id]
    with pytest.raises(SiemError):
        s.list(status="bogus")


def test_triage_history_keeps_actor_and_self_review(backend: Store) -> None:
    s = backend.store
    (alert_id,) = s.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"))], NOW)
    s.set_status(alert_id, "acknowledged", actor="soc-1", subjects={"emp-1"})
    s.comment(alert_id, "looked at it", actor="EMP-1", subjects={"emp-1"})
    s.set_status(alert_id, "closed", actor="soc-1")
    assert s.set_status(alert_id, "open", actor="soc-2").status == "open"
    hist = s.history(alert_id)
    assert [(h["type"], h["actor"], h["from_status"], h["to_status"], h["self_review"]) for h in hist] == [
        ("alert.acknowledge", "soc-1", "open", "acknowledged", False),
        ("alert.comment", "EMP-1", None, None, True),
        ("alert.close", "soc-1", "acknowledged", "closed", False),
        ("alert.reopen", "soc-2", "closed", "open", False),
    ]
    assert hist[1]["comment"] == "looked at it"
    with pytest.raises(SiemError):
        s.comment(alert_id, "A123456789 called", actor="soc-1")  # a national ID is refused
    with pytest.raises(AlertNotFound):
        s.set_status("al_nope", "closed", actor="soc-1")
    with pytest.raises(SiemError):
        s.set_status(alert_id, "gone", actor="soc-1")
    # The SIEM reads triage back as alert events; creation and extension rows are not among them.
    events, cursor = s.events_after(None)
    assert [e["type"] for e in events] == ["alert.acknowledge", "alert.comment", "alert.close", "alert.reopen"]
    assert s.events_after(cursor) == ([], cursor)
    # Delivery follows creations and status changes.
    changes = [(a, st) for _, a, st in s.changes_after(0) if st]
    assert changes == [(alert_id, "created"), (alert_id, "acknowledged"), (alert_id, "closed"), (alert_id, "open")]


def test_open_critical_alerts_for_escalation(backend: Store) -> None:
    s = backend.store
    (crit,) = s.merge(CRITICAL, [hit({"actor": "emp-9"}, (100.0, "c1"))], NOW)
    s.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"))], NOW)
    assert s.open_critical() == [(crit, NOW, 0)]
    s.set_status(crit, "closed", actor="soc-1")
    assert s.open_critical() == []
    s.set_status(crit, "open", actor="soc-1")
    ((aid, _, change),) = s.open_critical()
    assert aid == crit and change > 0
    assert s.alert_row(crit)["event_count"] == 1 and s.alert_row("al_nope") is None


def _some_history(s: Any) -> list[str]:
    ids = []
    for n in range(3):
        (a,) = s.merge(RULE, [hit({"actor": f"emp-{n}"}, (100.0 + n, f"e{n}"))], NOW)
        s.set_status(a, "acknowledged", actor="soc-1")
        ids.append(a)
    return ids


def test_history_chain_verifies_and_names_the_tampered_row(backend: Store) -> None:
    s = backend.store
    _some_history(s)
    brk, checked = s.verify_history()
    assert brk is None and checked == 6
    backend.sql("UPDATE siem_alert_history SET actor = 'someone-else' WHERE seq = 4")
    brk, checked = s.verify_history()
    assert brk is not None and brk.position == 4 and checked == 3
    assert "someone-else" not in brk.reason


@pytest.mark.parametrize("attack", [
    "DELETE FROM siem_alert_history WHERE seq = 2",
    "UPDATE siem_alert_history SET seq = 99 WHERE seq = 3",
    "UPDATE siem_alert_history SET to_status = 'closed' WHERE seq = 2",
    "UPDATE siem_alert_history SET detail = NULL WHERE seq = 1",
])
def test_removing_reordering_or_altering_any_row_is_caught(backend: Store, attack: str) -> None:
    s = backend.store
    _some_history(s)
    backend.sql(attack)
    brk, _ = s.verify_history()
    assert brk is not None


def test_removing_the_newest_rows_is_caught_against_the_head(backend: Store) -> None:
    s = backend.store
    _some_history(s)
    backend.sql("DELETE FROM siem_alert_history WHERE seq >= 5")
    brk, checked = s.verify_history()
    assert brk is not None and brk.position == 6 and checked == 4


def test_prune_deletes_old_closed_alerts_keeps_holds_and_the_chain_still_verifies(backend: Store) -> None:
    s = backend.store
    ids = []
    for n, close in enumerate((True, True, False, True)):  # a, b closed; c open; d closed after c
        (x,) = s.merge(RULE, [hit({"actor": f"emp-{n}"}, (100.0 + n, f"e{n}"))], NOW)
        if close:
            s.set_status(x, "closed", actor="soc-1")
        ids.append(x)
    a, b, c, d = ids  # history: a+ a× b+ b× c+ d+ d×  (seq 1..7)
    future = datetime.now(UTC) + timedelta(days=1)
    past = datetime.now(UTC) - timedelta(days=1)
    assert s.prune(past, []) == 0  # nothing closed before then
    assert s.prune(future, [a]) == 0  # a is held: the walk stops at its first row
    assert s.verify_history() == (None, 7)
    assert s.prune(future, [b]) == 1  # a goes, b is held
    with pytest.raises(AlertNotFound):
        s.get(a)
    assert s.verify_history() == (None, 5)
    # b goes; c is open, so the walk stops there and d (closed, but after c) stays.
    assert s.prune(future, []) == 1
    assert {x.alert_id for x in s.list()} == {c, d}
    brk, checked = s.verify_history()
    assert brk is None and checked == 3
    assert s.get(d).status == "closed"
    # Tampering after a prune is still caught, from the prune mark.
    backend.sql("UPDATE siem_alert_history SET comment = 'x' WHERE seq = 6")
    brk, _ = s.verify_history()
    assert brk is not None and brk.position == 6
    with pytest.raises(SiemError):
        s.prune(datetime(2030, 1, 1), [])  # naive time refused


def test_prune_never_splits_an_alert_from_its_history(backend: Store) -> None:
    s = backend.store
    (a,) = s.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"))], NOW)
    (b,) = s.merge(RULE, [hit({"actor": "emp-2"}, (100.0, "e2"))], NOW)
    for x in (a, b):
        s.set_status(x, "closed", actor="soc-1")
    (c,) = s.merge(RULE, [hit({"actor": "emp-3"}, (100.0, "e3"))], NOW)
    s.comment(a, "late note", actor="soc-1")  # a's last row comes after c's (open) creation
    assert s.prune(datetime.now(UTC) + timedelta(days=1), []) == 0
    assert s.count() == 3 and s.verify_history() == (None, 6)


def test_concurrent_writers_keep_one_chain(backend: Store) -> None:
    s = backend.store
    ids = _some_history(s)
    others = [backend.reopen() for _ in range(3)]
    errors: list[BaseException] = []

    def work(store: Any, n: int) -> None:
        try:  # triage and runs on the same alerts at once: one lock order, so no deadlock either
            for i in range(8):
                if n == 0:
                    store.merge(RULE, [hit({"actor": f"emp-{i % 3}"}, (100.0 + i % 3, f"e{i % 3}"),
                                           (200.0 + i, f"x{i}"))], NOW)
                elif n == 1:
                    store.set_status(ids[i % 3], ("open", "acknowledged")[i % 2], actor=f"soc-{n}")
                else:
                    store.comment(ids[i % 3], f"note {n}-{i}", actor=f"soc-{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(o, n)) for n, o in enumerate(others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert s.verify_history() == (None, 6 + 24)  # 8 extensions, 8 status changes, 8 comments
    assert sum(a.event_count for a in s.list()) == 3 + 8


def test_watermarks_are_kept_per_rule_and_kind(backend: Store) -> None:
    s = backend.store
    if not s.shared:
        assert s.watermark("r-1", "decision") is None  # SQLite: the engine's own table in siem.db
        return
    assert s.watermark("r-1", "decision") is None
    with s.transaction():
        s.save_watermarks("r-1", {"decision": Watermark(10, 500.0, "inst-a")})
    assert s.watermark("r-1", "decision") == Watermark(10, 500.0, "inst-a")
    with s.transaction():  # the time never goes back; rid and instance are the writer's
        s.save_watermarks("r-1", {"decision": Watermark(3, 400.0, "inst-b")})
    assert s.watermark("r-1", "decision") == Watermark(3, 500.0, "inst-b")
    assert s.watermark("r-2", "decision") is None


def test_a_siem_db_from_before_the_chain_is_linked_in_place(tmp_path) -> None:  # noqa: ANN001
    """An older siem.db (history without links, no head row) keeps its rows and becomes verifiable."""
    path = tmp_path / "siem.db"
    old = connect(path)
    old.execute("""CREATE TABLE siem_alert_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
        type TEXT NOT NULL, actor TEXT NOT NULL, alert_id TEXT NOT NULL, rule_id TEXT NOT NULL,
        level TEXT NOT NULL, from_status TEXT, to_status TEXT, self_review INTEGER NOT NULL, comment TEXT)""")
    for n, (kind, new) in enumerate((("alert.acknowledge", "acknowledged"), ("alert.close", "closed")), 1):
        old.execute("INSERT INTO siem_alert_history (event_id, time, type, actor, alert_id, rule_id, level, "
                    "from_status, to_status, self_review) VALUES (?,?,?,?,?,?,?,?,?,0)",
                    (f"ev-{n}", NOW, kind, "soc-1", "al_old", "r-1", "high", "open", new))
    old.close()
    store = AlertStore(connect(path))
    try:
        assert store.verify_history() == (None, 2)
        assert [h["type"] for h in store.history("al_old")] == ["alert.acknowledge", "alert.close"]
        (a,) = store.merge(RULE, [hit({"actor": "emp-1"}, (100.0, "e1"))], NOW)  # appends after them
        assert store.verify_history() == (None, 3)
        AlertStore(store.conn)  # opening again adopts nothing twice
        store.conn.execute("UPDATE siem_alert_history SET actor = 'x' WHERE seq = 1")
        assert store.verify_history()[0].position == 1
    finally:
        store.close()
