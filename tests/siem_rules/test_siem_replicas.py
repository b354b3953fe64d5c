"""The SIEM across replicas (ZTCP_DATABASE_URL): alerts, their history and the rules' watermarks in
PostgreSQL, each replica's siem.db its own working set of events.

A scheduler leader runs the pack, then dies; the next leader — a siem.db of its own, filled from the
same sources from the beginning — takes over. Compared with one process that saw the same traffic:
no alert lost, none duplicated, a closed alert stays closed, and a correlation whose window spans the
takeover still fires.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from demo.siem_week import WEEK_START, Traffic, bureau_config
from siem_rules import Engine, RulePack, connect
from siem_rules.pg_alerts import PostgresAlertStore


def _traffic() -> tuple[list, list, str]:
    t = Traffic(seed=3, employees=3)
    night = WEEK_START + timedelta(days=2, hours=23)  # Wednesday 23:00 local: off hours
    day = WEEK_START + timedelta(days=2, hours=10)
    first = [t.prov(night + timedelta(minutes=5 * i), "emp-0009", t.citizen()) for i in range(6)]
    # 120 reads in the first half hour, 100 in the next 20 minutes: 220 in one hour, across the takeover.
    first += [t.prov(day + timedelta(seconds=15 * i), "emp-0007", t.citizen()) for i in range(120)]
    second = [t.prov(day + timedelta(minutes=30, seconds=12 * i), "emp-0007", t.citizen()) for i in range(100)]
    return first, second, "off_hours_access"


def _shape(alerts: list) -> set[tuple]:
    return {(a.rule_name, json.dumps(a.group_keys, sort_keys=True), a.first_seen, a.event_count, tuple(a.evidence),
             a.status) for a in alerts}


def test_takeover_neither_loses_nor_duplicates_and_spanning_correlations_fire(tmp_path: Path, pg_dsn: str) -> None:
    first, second, closed_rule = _traffic()
    pack = RulePack(bureau_config())

    # One process, the reference.
    ref = Engine(connect(tmp_path / "ref.db"), pack)
    ref.store.ingest(first)
    ref.run()
    for a in ref.alerts.list(rule_id=pack.find(closed_rule).id):
        ref.alerts.set_status(a.alert_id, "closed", actor="soc-1")
    ref.store.ingest(second)
    touched_by_second = {ref.alerts.get(a).rule_name for a in ref.run().alerts_touched}
    expected = _shape(ref.alerts.list())
    assert any(a.rule_name == "bulk_reads_by_actor" and a.event_count == 220 for a in ref.alerts.list())

    # Leader A runs the first part; an analyst closes the off-hours alert on another replica.
    shared = PostgresAlertStore(pg_dsn, evidence_cap=pack.config.evidence_cap)
    leader_a = Engine(connect(tmp_path / "a.db"), pack, alerts=shared)
    leader_a.store.ingest(first)
    leader_a.run()
    before = {a.alert_id for a in shared.list()}
    assert not any(a.rule_name == "bulk_reads_by_actor" for a in shared.list())  # 120 < 200 so far
    console = PostgresAlertStore(pg_dsn)
    (off,) = console.list(rule_id=pack.find(closed_rule).id)
    console.set_status(off.alert_id, "closed", actor="soc-1")
    leader_a.conn.close()  # A is gone (its siem.db with it, as far as B knows)

    # Leader B: its own siem.db, filled from the sources from the start, then the pack.
    leader_b = Engine(connect(tmp_path / "b.db"), pack, alerts=PostgresAlertStore(pg_dsn))
    assert leader_b.instance != leader_a.instance
    leader_b.store.ingest(first + second)
    report = leader_b.run()
    after = console.list()
    assert before <= {a.alert_id for a in after}  # nothing lost
    assert _shape(after) == expected  # nothing duplicated; the closed one stays closed
    bulk = [a for a in after if a.rule_name == "bulk_reads_by_actor"]
    assert len(bulk) == 1 and bulk[0].event_count == 220  # the window spanning the takeover fired
    # What B changed is what the second part changed for the one process, nothing more.
    assert {console.get(a).rule_name for a in report.alerts_touched} == touched_by_second

    # B runs again with nothing new: its own watermarks now, nothing touched; history intact.
    assert leader_b.run().alerts_touched == []
    assert console.verify_history()[0] is None
    # A comes back as leader later with its old siem.db: B's watermarks, re-read by time; no change.
    leader_a2 = Engine(connect(tmp_path / "a.db"), pack, alerts=PostgresAlertStore(pg_dsn))
    assert leader_a2.instance == leader_a.instance
    leader_a2.store.ingest(second)
    assert leader_a2.run().alerts_touched == []
    assert _shape(console.list()) == expected


def test_self_review_is_marked_on_a_replica_without_the_evidence_events(tmp_path: Path, pg_dsn: str) -> None:
    from siem_rules import triage

    pack = RulePack(bureau_config())
    rule, events = Traffic(seed=4, employees=3).incidents()["fraud"]
    leader = Engine(connect(tmp_path / "a.db"), pack, alerts=PostgresAlertStore(pg_dsn))
    leader.store.ingest(events)
    leader.run()
    (alert,) = leader.alerts.list(rule_id=pack.find(rule).id)
    assert "actor" not in alert.group_keys  # grouped by citizen: the broker is named only by the evidence
    broker = events[0][1]["actor"]["id"]
    leader.close()
    other = PostgresAlertStore(pg_dsn)  # another replica: an empty siem.db, the shared alerts
    try:
        assert broker in other.subjects(alert.alert_id)
        triage.set_status(other, alert.alert_id, "closed", actor=broker, events=connect(tmp_path / "b.db"))
        assert [(h["actor"], h["self_review"]) for h in other.history(alert.alert_id)] == [(broker, True)]
        events_seen, _ = other.events_after(None)
        assert events_seen[0]["self_review"] is True  # and the SIEM reads it back as such
    finally:
        other.close()
