"""The SIEM reads the live stores of the other components: real decisions and policy events flow in."""

from __future__ import annotations

from click.testing import CliRunner

from cli.cmd_siem import live_sources, make_engine
from cli.main import ztcp
from cli.runtime import Runtime
from cli.settings import load_settings
from pdp.models import DecisionRequest


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
