"""A small seeded bureau for the console's tests (HTTP and browser): real components throughout.

The pattern of tests/e2e/test_gateway.py: the sealed local keyring, a real encrypted table made by
keymgmt's adapter, reads and a disclosure through the reference gateway (provenance recorded by
the decrypt path), a staff directory, a policy revision proposed by one officer, and a SIEM run
over the live stores. Call it with ZTCP_HOME pointing at an empty directory.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from fastapi.testclient import TestClient

import contracts
from policy import pack_from_files, run_tests
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings
from server.siem import live_sources, make_engine

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

DATASET, NID_X, NID_Y, PEOPLE = insured.DATASET, insured.NID_X, insured.NID_Y, insured.PEOPLE
CASE = "C-CON-0001"
PROXY = "192.0.2.10"  # the bureau's trusted proxy passes on the workstation, zone and location
HEADERS = {"X-Device-Id": "dev-con-1", "X-Network-Zone": "internal", "X-Channel": "counter", "X-Geo": "25.04,121.56"}
AUTHOR, CHECKER = "emp-so-1", "emp-so-2"
STAFF = [
    {"id": "emp-aud-1", "display_name": "林稽核", "office": "head-office", "roles": ["auditor"],
     "auth_method": "fido2"},
    {"id": "emp-soc-1", "display_name": "陳資安", "office": "head-office", "roles": ["soc_analyst"],
     "auth_method": "fido2"},
    {"id": AUTHOR, "display_name": "王政策", "office": "head-office", "roles": ["security_officer"],
     "auth_method": "fido2"},
    {"id": CHECKER, "display_name": "李覆核", "office": "head-office", "roles": ["security_officer"],
     "auth_method": "fido2"},
    {"id": "emp-key-1", "display_name": "張金鑰", "office": "head-office", "roles": ["key_custodian"],
     "auth_method": "fido2"},
    {"id": "emp-officer", "display_name": "黃承辦", "office": "taipei-01", "roles": ["case_officer"],
     "auth_method": "fido2"},
    {"bogus": True},  # the reader skips what it cannot use
]



def seed_home(home: Path) -> dict:
    settings = load_settings(engine_timeout_ms=2000, trusted_proxies=[PROXY])
    rt = Runtime(settings)
    try:
        rt.keys.ensure_all()
        rt.device_inventory.register("dev-con-1", managed=True, compliant=True, actor="test")
        ref_x = contracts.citizen_ref(NID_X, rt.keys.blind_index)
        ref_y = contracts.citizen_ref(NID_Y, rt.keys.blind_index)
        insured.write_bureau(home, CASE, ref_x, ["emp-officer"], rt)
        (home / "directory.json").write_text(json.dumps({"staff": STAFF}, ensure_ascii=False))
        insured.create_encrypted_table(rt, PEOPLE)

        with TestClient(create_app(rt), client=(PROXY, 50000)) as client:
            tok = rt.issuer.issue_subject("emp-officer", ["case_officer"], method="fido2", mfa=True,
                                          org_unit="taipei-01")
            auth = {"Authorization": f"Bearer {tok}", **HEADERS}
            params = {"fields": "name,address", "purpose": "benefit_review", "case_id": CASE}
            read = client.get(f"/v1/records/{DATASET}/1", params=params, headers=auth)
            assert read.status_code == 200, read.text
            read_event = read.json()["provenance"]["event_id"]
            second = client.get(f"/v1/records/{DATASET}/1", params={**params, "fields": "phone"}, headers=auth)
            assert second.status_code == 200, second.text
            disclosure = client.post("/v1/disclosures", headers=auth, json={
                "dataset": DATASET, "record_id": "1", "fields": ["name", "address"],
                "recipient": {"type": "agency", "id": "agency-tax", "channel": "exchange-backbone"},
                "purpose": {"code": "benefit_review", "case_id": CASE, "legal_basis": "TCA-Art-30"},
                "derived_from": [read_event]})
            assert disclosure.status_code == 201, disclosure.text
        # A batch system that stopped sending its case: recorded (as PEPs do) and caught by the SIEM.
        rt.recorder.record(contracts.ProvenanceEvent(
            type="pii.read", actor={"id": "svc-batch-7", "type": "service"}, citizen_ref=ref_y, dataset=DATASET,
            record_id="2", fields=["name"], purpose={"code": "benefit_review"}, via={"system": "batch-7"}))
        rt.ledger.checkpoint()

        # A revision proposed by one officer (tested like `ztcp policy propose` does), awaiting a second.
        store = rt.revision_store
        files = dict(store.files("r1"))
        cfg = "ztcp/config/data.json"
        files[cfg] = files[cfg].replace(b'"call_center": 10', b'"call_center": 12')
        pack = pack_from_files(files)
        report = run_tests(pack)
        assert report.ok
        proposed = store.propose(pack, author=AUTHOR, message="call centre search limit 10 -> 12",
                                 checks={"problems": 0, "passed": report.passed, "failed": 0, "errors": 0})
        assert rt.point.log.flush()
    finally:
        rt.close()

    siem = make_engine(settings)
    try:
        siem.ingest(live_sources(settings))
        siem.run()
        alerts = siem.alerts.list()
    finally:
        siem.conn.close()
    missing_case = [a for a in alerts if a.rule_name == "access_without_case_or_purpose"]
    assert missing_case, [a.rule_name for a in alerts]
    return {"ref_x": ref_x, "ref_y": ref_y, "nid_x": NID_X, "nid_y": NID_Y, "read_event": read_event,
            "alert_id": missing_case[0].alert_id, "alerts": [a.alert_id for a in alerts],
            "proposed": proposed.id}
