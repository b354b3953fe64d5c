"""The bureau's registers change decisions only through a signed, approved revision (issue #13,
finding 8): an agreement, a protected citizen or a dataset classification written into the live
``bureau-data.json`` is ignored; cases and consents (operational facts) still come from it."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest

from contracts.decision import DecisionRequest
from server.runtime import BUREAU_DATA_FILE, Runtime
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

AGREEMENT = [{"id": "DSA-2026-077", "dataset": "insured_persons", "fields": ["name"], "legal_basis": "LSA-Art-9",
              "expires": "2099-12-31T00:00:00Z", "status": "approved"}]


@pytest.fixture
def rt(ztcp_home: Path):
    runtime = Runtime(load_settings(engine_timeout_ms=2000))
    runtime.keys.ensure_all()
    runtime.point  # noqa: B018 - r1 published, the PDP on it
    yield runtime
    runtime.close()


def _disclose(rt: Runtime, agency: str) -> list[str]:
    token = rt.issuer.issue_subject("emp-officer", ["case_officer"], method="fido2", mfa=True, org_unit="taipei-01")
    request = DecisionRequest.model_validate({
        "subject_token": token, "device": {"id": "dev-1", "managed": True, "compliant": True},
        "context": {"network_zone": "internal", "geo": {"lat": 25.04, "lon": 121.56}},
        "resource": {"type": "record", "dataset": "insured_persons", "fields": ["name"]}, "action": "disclose",
        "purpose": {"code": "benefit_review", "legal_basis": "LSA-Art-9"},
        "recipient": {"type": "agency", "id": agency}})
    return rt.point.decide(request).reasons


def test_an_agreement_in_the_live_file_changes_nothing_until_a_revision_carries_it(
        rt: Runtime, ztcp_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = _disclose(rt, "agency-labour")
    assert "recipient_no_agreement" in before
    live = json.loads((ROOT / "policy/rego/bureau/data.json").read_text())
    live["agreements"]["agency-labour"] = AGREEMENT
    with caplog.at_level(logging.WARNING, logger="ztcp.runtime"):
        (ztcp_home / BUREAU_DATA_FILE).write_text(json.dumps(live))
        rt.reloader.check()
        assert "recipient_no_agreement" in _disclose(rt, "agency-labour")  # ignored
    assert "agreements ignored" in caplog.text
    # Through the lifecycle: proposed, approved by a second officer, published signed.
    signed = json.loads((ROOT / "policy/rego/bureau/data.json").read_text())["agreements"]
    insured.publish_registers(rt, {"agreements": {**signed, "agency-labour": AGREEMENT}})
    assert "recipient_no_agreement" not in _disclose(rt, "agency-labour")


def test_cases_still_come_from_the_live_feed(rt: Runtime, ztcp_home: Path) -> None:
    ref = "cr_" + "A" * 52
    insured.write_bureau(ztcp_home, "C-LIVE-1", ref, ["emp-officer"])
    rt.reloader.check()
    assert rt.bureau_data()["cases"]["C-LIVE-1"]["citizen_ref"] == ref
    merged = rt._bureau_for(rt.pack())
    assert "C-LIVE-1" in merged["cases"]
    assert merged["datasets"] == rt.pack().data["bureau"]["datasets"]  # the signed register, not the live one
