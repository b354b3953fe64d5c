"""The SIEM reads the live stores of the other components: real decisions and policy events flow in."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.main import ztcp
from contracts.decision import DecisionRequest
from server.runtime import Runtime
from server.settings import load_settings
from server.siem import live_sources, make_engine


def test_decisions_and_policy_events_reach_the_siem(ztcp_home):
    settings = load_settings(engine_timeout_ms=2000)
    rt = Runtime(settings)
    try:
        point = rt.point  # bootstraps r1 (a policy.publish admin event)
        token = rt.issuer.issue_subject("emp-0042", ["case_officer"], method="password")
        for i in range(5):
            point.decide(DecisionRequest.model_validate({
                "subject_token": token,
                "device": {"id": "dev-1", "managed": False, "compliant": False},
                "context": {"network_zone": "internet"},
                "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": f"r-{i}",
                             "citizen_ref": "cr_" + "A" * 51 + "BCDEFG"[i], "fields": ["name"]},
                "action": "read", "purpose": {"code": "benefit_review", "case_id": "C-404"}}))
        assert point.log.flush()
    finally:
        rt.close()
    names = {s.name for s in live_sources(settings)}
    assert {"decisions", "policy-admin"} <= names
    engine = make_engine(settings)
    try:
        counts = engine.ingest(live_sources(settings))
    finally:
        engine.conn.close()
    assert counts == 5 + 2  # five decisions, and the bootstrap's policy.propose + policy.publish
    result = CliRunner().invoke(ztcp, ["siem", "run", "--json"])
    assert result.exit_code == 0, result.output


def test_a_malformed_live_event_is_quarantined_not_a_blocked_feed(tmp_path):
    """One bad entry in a live store must not blind the SIEM: the rest flows, the bad one is kept aside."""
    from pdp.decision_log import DecisionLog
    from siem_rules import CallableSource

    log = DecisionLog(tmp_path / "decisions.db")
    good = {"decision_id": "d-good", "timestamp": "2026-11-23T02:00:00Z", "ts": 1795399200.0,
            "path": "ztcp/authz/decision",
            "input": {"subject": {"id": "emp-1"}, "action": "read", "resource": {"dataset": "insured_persons"}},
            "result": {"effect": "permit"}, "bundles": {"ztcp": {"revision": "r1"}}}
    bad = {**good, "decision_id": "d-bad", "timestamp": "not a time"}
    later = {**good, "decision_id": "d-later"}
    for entry in (good, bad, later):
        log.submit(entry)
    assert log.flush()
    log.close()
    settings = load_settings()
    engine = make_engine(settings)
    try:
        stored = engine.ingest([CallableSource("decisions", "decision", log.events_after)])
        assert stored == 2
        quarantined = engine.store.quarantined()
        assert [(q["source"], q["event_id"]) for q in quarantined] == [("decisions", "d-bad")]
        assert "not a time" not in quarantined[0]["reason"]  # the schema error, never the value
        assert engine.ingest([CallableSource("decisions", "decision", log.events_after)]) == 0  # cursor moved
    finally:
        engine.conn.close()


def test_an_exported_ledger_and_the_live_ledger_raise_the_same_fraud_broker_alert(ztcp_home, tmp_path):
    """A SOC fed `ztcp audit export --format jsonl` sees what the live feed sees: the ledger's own events
    (actor objects, a pii.update's changed fields in ``fields``) go through `ztcp siem run --events`
    unchanged and raise the fraud-broker alert, with the same alerts as the live sources."""
    from datetime import UTC, datetime, timedelta

    import contracts
    import provenance
    from server.bootstrap import system_keys
    from server.identity import dev_issuer
    from server.ledger import ledger_from_settings
    from siem_rules import Engine, connect
    from siem_rules.fixtures import synthetic_citizen_ref
    from siem_rules.store import TABLE

    settings = load_settings()
    keys = system_keys(settings)
    victims = [contracts.citizen_ref(nid, keys.blind_index) for nid in ("A123456789", "F131104093")]
    mule = contracts.bank_account_ref("700-1234-5678-9012", keys.blind_index)
    broker = {"id": "emp-0321", "type": "staff", "roles": ["counter_clerk"], "unit": "taipei-01"}
    t0 = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Taipei: office hours

    def event(minutes: float, **fields) -> contracts.ProvenanceEvent:
        return contracts.ProvenanceEvent(time=t0 + timedelta(minutes=minutes), via={"system": "ztcp-gateway",
                                         "channel": "counter"}, dataset="insured_persons", effect="permit", **fields)

    reads = [event(10 * i, type="pii.read", actor=broker, citizen_ref=v, record_id=f"r-{i}",
                   fields=["name", "bank_account"], purpose={"code": "data_correction", "case_id": f"C-F{i}"})
             for i, v in enumerate(victims)]
    updates = [event(300 + 10 * i, type="pii.update", actor=broker, citizen_ref=v, record_id=f"r-{i}",
                     fields=["bank_account"], bank_account_ref=mule,
                     purpose={"code": "data_correction", "case_id": f"C-F{i}"})
               for i, v in enumerate(victims)]
    # An ordinary citizen-requested change by a colleague: no alert.
    honest = synthetic_citizen_ref("honest-1")
    benign = [event(60, type="pii.read", actor={"id": "emp-0100", "type": "staff"}, citizen_ref=honest,
                    fields=["bank_account"], purpose={"code": "bank_account_change", "case_id": "C-7"}),
              event(65, type="pii.update", actor={"id": "emp-0100", "type": "staff"}, citizen_ref=honest,
                    fields=["bank_account"], purpose={"code": "bank_account_change", "case_id": "C-7"})]
    with ledger_from_settings(settings, keys) as ledger:
        provenance.Recorder(ledger).record_many([*reads, *benign, *updates])

    auditor = dev_issuer(settings, keys).issue_subject("auditor-7", ["auditor"], mfa=True, ttl_seconds=600)
    export = tmp_path / "ledger.jsonl"
    res = CliRunner().invoke(ztcp, ["audit", "export", "--format", "jsonl", "-o", str(export)],
                             env={"ZTCP_TOKEN": auditor}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = export.read_text().splitlines()
    assert len(lines) == 7 and '"kind"' not in export.read_text()  # the ledger's entries, nothing added

    res = CliRunner().invoke(ztcp, ["siem", "run", "--events", str(export), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    from_file = {a["alert_id"]: a for a in json.loads(res.output)}
    fraud = [a for a in from_file.values() if a["rule_name"] == "fraud_broker_read_then_account_change"]
    assert len(fraud) == len(victims)  # one per victim (grouped by citizen_ref)
    caught = {eid for a in fraud for eid in a["evidence"]}
    assert caught == {e.event_id for e in (*reads, *updates)}
    assert {a["group_keys"]["citizen_ref"] for a in fraud} == set(victims)
    assert not any(honest in json.dumps(a["group_keys"]) for a in from_file.values())

    # The same ledger through the live feed, into a SIEM store of its own: the same alerts.
    engine = make_engine(settings)
    live_engine = Engine(connect(tmp_path / "siem-live.db"), engine.pack)
    engine.conn.close()
    try:
        assert "provenance" in {s.name for s in live_sources(settings)}
        assert live_engine.ingest(live_sources(settings)) >= 7
        report = live_engine.run()
        live = {a.alert_id: a.model_dump() for a in (live_engine.alerts.get(i) for i in set(report.alerts_touched))}
        assert live_engine.conn.execute(f"SELECT count(*) FROM {TABLE['provenance']}").fetchone()[0] == 7
        assert live_engine.store.quarantined() == []
    finally:
        live_engine.conn.close()
    key = ("rule_name", "group_keys", "evidence", "first_seen", "last_seen", "event_count")
    assert {i: [a[k] for k in key] for i, a in live.items()} == {i: [a[k] for k in key] for i, a in from_file.items()}
