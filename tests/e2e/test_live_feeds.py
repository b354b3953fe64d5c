"""The SIEM reads the live stores of the other components: real decisions and policy events flow in."""

from __future__ import annotations

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
