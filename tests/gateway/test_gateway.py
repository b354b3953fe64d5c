"""The reference gateway end to end over HTTP, with real components: the sealed local keyring, a
real encrypted SQLite table made by keymgmt's adapter, the default Rego pack on the in-process
engine, and the real provenance ledger. Every plaintext read must have exactly one ledger event."""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

import contracts
import keymgmt
from contracts.decision import Decision, DecisionRequest
from gateway.obligations import check_obligations, max_rows
from pdp.problems import Problem
from server.app import create_app
from server.ledger import ledger_from_settings
from server.runtime import Runtime
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

DATASET, NID_X, NID_Y = insured.DATASET, insured.NID_X, insured.NID_Y
CASE = "C-GW-0001"
# What the bureau's proxy (PROXY, trusted) passes on for a counter workstation enrolled in the inventory.
PROXY = "192.0.2.10"
INTERNAL = {"X-Device-Id": "dev-gw-1", "X-Network-Zone": "internal", "X-Channel": "counter", "X-Geo": "25.04,121.56"}
PEOPLE = {  # record id -> (national id, name, address, phone, bank account)
    **insured.PEOPLE,
    3: (NID_X, "王小明", "新北市板橋區中山路一段3號", "0912345678", "8120000123456789"),
}


class World:
    def __init__(self, rt: Runtime, client: TestClient) -> None:
        self.rt = rt
        self.client = client
        self.app = client.app
        self.ref_x = contracts.citizen_ref(NID_X, rt.keys.blind_index)
        self.ref_y = contracts.citizen_ref(NID_Y, rt.keys.blind_index)

    def token(self, sub: str, role: str, *, method: str = "fido2") -> dict[str, str]:
        tok = self.rt.issuer.issue_subject(sub, [role], method=method, mfa=method != "password",
                                           org_unit="taipei-01")
        return {"Authorization": f"Bearer {tok}", **INTERNAL}

    def read(self, headers: dict, record_id: object, fields: str, *, purpose: str = "benefit_review",
             case_id: str | None = CASE):
        params = {"fields": fields, "purpose": purpose}
        if case_id:
            params["case_id"] = case_id
        return self.client.get(f"/v1/records/{DATASET}/{record_id}", params=params, headers=headers)

    def events(self, type_: str | None = None) -> list[contracts.ProvenanceEvent]:
        out = [e.event for e in self.rt.ledger.entries()]
        return [e for e in out if type_ is None or e.type == type_]


@pytest.fixture
def world(ztcp_home: Path):
    settings = load_settings(engine_timeout_ms=2000, trusted_proxies=[PROXY])
    rt = Runtime(settings)
    rt.keys.ensure_all()  # what `ztcp serve` bootstraps: data KEK, blind-index and signing keys
    rt.device_inventory.register("dev-gw-1", managed=True, compliant=True, actor="test")
    # The bureau's registers: the sample pack's, plus one open case about citizen X.
    insured.write_bureau(ztcp_home, CASE, contracts.citizen_ref(NID_X, rt.keys.blind_index),
                         ["emp-officer", "emp-counter"], rt)
    # A plaintext table, then encrypted in place by keymgmt's adapter (as `ztcp keys encrypt-table`).
    assert insured.create_encrypted_table(rt, PEOPLE).rows_changed == len(PEOPLE)

    app = create_app(rt)
    with TestClient(app, client=(PROXY, 50000)) as client:  # every request arrives through the proxy
        yield World(rt, client)
    rt.close()


def _db_path(rt: Runtime) -> str:
    return rt.settings.protected_db_url.removeprefix("sqlite:///")


def test_table_holds_only_ciphertext(world: World) -> None:
    with sqlite3.connect(_db_path(world.rt)) as db:
        rows = db.execute("SELECT name, national_id, bank_account FROM insured_persons").fetchall()
    assert rows and all(v.startswith("ze1:") for row in rows for v in row)


def test_permit_returns_masked_plaintext_and_one_event_per_read(world: World) -> None:
    counter = world.token("emp-counter", "counter_staff")
    r = world.read(counter, 1, "name,bank_account,national_id")
    assert r.status_code == 200, r.text
    body = r.json()
    nid, name, _addr, _phone, bank = PEOPLE[1]
    assert body["fields"]["name"] == name
    assert body["fields"]["bank_account"] == "*" * (len(bank) - 4) + bank[-4:]  # mask last4
    assert body["fields"]["national_id"] == "*" * len(nid)  # style the gate does not know: all masked
    assert nid not in r.text
    applied = {(o["type"], o.get("field")): o for o in body["obligations_applied"]}
    assert applied[("mask", "bank_account")]["status"] == "applied"
    assert applied[("record_provenance", None)]["event_id"] == body["provenance"]["event_id"]
    assert body["citizen_ref"] == world.ref_x
    assert r.headers["cache-control"] == "no-store"

    # A case officer is exempt from those masks; several reads, each one recorded once.
    officer = world.token("emp-officer", "case_officer")
    responses = [r]
    for rid in (1, 3, 1):
        resp = world.read(officer, rid, "name,national_id,bank_account")
        assert resp.status_code == 200, resp.text
        assert resp.json()["fields"]["national_id"] == PEOPLE[rid][0]
        responses.append(resp)

    reads = world.events("pii.read")
    assert len(reads) == len(responses)  # count reads vs ledger events: equal
    by_id = {e.event_id: e for e in reads}
    for resp in responses:
        b = resp.json()
        ev = by_id[b["provenance"]["event_id"]]
        assert ev.decision_id == b["decision_id"]
        assert ev.record_id == b["record_id"] and ev.citizen_ref == world.ref_x
        assert sorted(ev.fields) == sorted(b["fields"])
        assert ev.purpose.code == "benefit_review" and ev.purpose.case_id == CASE
        assert ev.via.system == "ztcp-gateway" and ev.via.channel == "counter"
        # Who and which unit, from the verified subject token (the auditor's "who, unit").
        assert ev.actor.unit == "taipei-01" and ev.actor.roles and ev.actor.type == "staff"
    # No value reached the ledger, only names and references.
    path = world.rt.ledger.path
    raw = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    assert world.ref_x.encode() in raw  # the check below can see the ledger's contents
    assert NID_X.encode() not in raw and PEOPLE[1][1].encode() not in raw


def test_step_up_is_a_401_challenge_naming_the_method(world: World) -> None:
    counter = world.token("emp-counter", "counter_staff", method="password")
    r = world.read(counter, 1, "name", case_id=None)  # counter staff without a case: walk-in → step up
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="fido2"' in challenge
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["required_method"] == "fido2" and body["decision_id"] and "fields" not in body
    assert PEOPLE[1][1] not in r.text
    assert world.events("pii.read") == []


def test_a_walk_in_after_a_fresh_fido2_sign_in_is_served(world: World) -> None:
    # Counter staff without a case (a walk-in) step up to FIDO2 (RFC 9470 acr_values + max_age): a
    # FIDO2 sign-in within the policy's max_age meets it, so the clerk is served, not looped.
    counter = world.token("emp-counter", "counter_staff", method="fido2")
    r = world.read(counter, 1, "name", case_id=None)
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == {"name": PEOPLE[1][1]}
    (read,) = world.events("pii.read")
    assert read.decision_id == r.json()["decision_id"] and read.purpose.case_id is None


def test_an_old_fido2_sign_in_is_challenged_for_a_fresh_one(world: World) -> None:
    old_login = world.rt.issuer.issue_subject("emp-counter", ["counter_staff"], method="fido2", mfa=True,
                                              org_unit="taipei-01", auth_time=int(time.time()) - 4 * 3600)
    r = world.read({**INTERNAL, "Authorization": f"Bearer {old_login}"}, 1, "name", case_id=None)
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert 'acr_values="fido2"' in challenge and 'max_age="300"' in challenge
    assert r.json()["max_age"] == 300
    assert world.events("pii.read") == []


def test_a_step_up_the_user_already_meets_is_a_403_not_a_login_loop(world: World) -> None:
    # Risk steps this officer up to FIDO2 (unmanaged, new device, over VPN: 40+ points, under the deny
    # threshold) — but they have just signed in with FIDO2. The device is the problem, so another
    # identical challenge cannot help: the gateway refuses instead of looping the user.
    officer = world.token("emp-officer", "case_officer", method="fido2")
    headers = {**officer, "X-Device-Id": "dev-personal-laptop", "X-Network-Zone": "vpn"}  # not in the inventory
    r = world.read(headers, 1, "name")
    assert r.status_code == 403, r.text
    assert "www-authenticate" not in r.headers
    body = r.json()
    assert "step_up_already_satisfied" in body["reasons"]
    assert world.events("pii.read") == []


def test_deny_is_403_with_reasons_and_no_read_event(world: World) -> None:
    reviewer = world.token("emp-stranger", "reviewer")  # not assigned to the case
    r = world.read(reviewer, 1, "name,address")
    assert r.status_code == 403, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "not_assigned" in body["reasons"] and body["decision_id"]
    assert PEOPLE[1][1] not in r.text and PEOPLE[1][2] not in r.text
    assert world.events("pii.read") == []
    denied = world.events("pii.denied")
    assert [e.decision_id for e in denied] == [body["decision_id"]]
    assert denied[0].actor.id == "emp-stranger" and denied[0].effect == "deny"


def test_decision_token_cannot_be_replayed_for_another_record(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")["Authorization"].split()[1]
    decision = world.rt.point.decide(DecisionRequest.model_validate({
        "subject_token": officer,
        "device": {"id": "dev-gw-1", "managed": True, "compliant": True},
        "context": {"network_zone": "internal"},
        "resource": {"type": "record", "dataset": DATASET, "record_id": "1", "citizen_ref": world.ref_x,
                     "fields": ["name"]},
        "action": "read", "purpose": {"code": "benefit_review", "case_id": CASE}}))
    assert decision.effect == "permit" and decision.token
    reader = world.rt.protected_reader(DATASET)
    for other in (3, 2):  # same citizen's other record; another citizen's record
        with pytest.raises(keymgmt.DecryptRefused) as exc:
            reader.read(decision.token, other, ["name"], purpose="benefit_review")
        assert exc.value.reason == "wrong_record"
    with pytest.raises(keymgmt.DecryptRefused) as exc:  # a read permit is not a search permit
        reader.search(decision.token, "national_id", NID_X, purpose="benefit_review")
    assert exc.value.reason == "wrong_action"
    assert world.events("pii.read") == []
    assert reader.read(decision.token, 1, ["name"], purpose="benefit_review") == {"name": PEOPLE[1][1]}
    assert len(world.events("pii.read")) == 1


def test_ledger_failure_returns_503_and_no_plaintext(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")
    world.rt.ledger.close()  # the ledger is gone (disk, lock, crash): nothing can be recorded
    r = world.read(officer, 1, "name,address,bank_account")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    for value in PEOPLE[1][1:]:
        assert value not in r.text
    s = world.client.post(f"/v1/records/{DATASET}/search", headers=officer,
                          json={"value": NID_X, "purpose": "benefit_review", "case_id": CASE})
    assert s.status_code == 503, s.text
    assert "records" not in s.json()
    reopened = ledger_from_settings(world.rt.settings, world.rt.keys)
    try:
        assert [e.event.type for e in reopened.entries()] == []
    finally:
        reopened.close()


def test_a_full_width_national_id_is_the_same_id_not_a_500(world: World) -> None:
    """Issue #13 finding 3: the screen and citizen_ref did not NFKC-normalise; a national ID typed on a
    CJK keyboard (full-width letters and digits) was a 500. It is the same citizen."""
    officer = world.token("emp-officer", "case_officer")
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in NID_X)
    r = world.client.post(f"/v1/records/{DATASET}/search", headers=officer,
                          json={"value": full_width, "purpose": "benefit_review", "case_id": CASE})
    assert r.status_code == 200, r.text
    assert r.json()["citizen_ref"] == world.ref_x
    assert sorted(int(x["record_id"]) for x in r.json()["records"]) == [1, 3]
    assert full_width not in r.text and NID_X not in r.text


def test_search_by_national_id_goes_through_the_blind_index_and_is_recorded(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")
    r = world.client.post(f"/v1/records/{DATASET}/search", headers=officer,
                          json={"column": "national_id", "value": NID_X.lower(), "purpose": "benefit_review",
                                "case_id": CASE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(int(x["record_id"]) for x in body["records"]) == [1, 3]
    assert body["citizen_ref"] == world.ref_x and NID_X not in r.text
    searches = world.events("pii.search")
    assert len(searches) == 1 and searches[0].event_id == body["provenance"]["event_id"]
    assert searches[0].fields == ["national_id"] and searches[0].citizen_ref == world.ref_x
    assert searches[0].decision_id == body["decision_id"]
    assert world.events("pii.read") == []

    # Another citizen's ID is outside the officer's case: denied, nothing found, nothing disclosed.
    d = world.client.post(f"/v1/records/{DATASET}/search", headers=officer,
                          json={"value": NID_Y, "purpose": "benefit_review", "case_id": CASE})
    assert d.status_code == 403, d.text
    assert "records" not in d.json() and "no_case" not in d.json()["reasons"]
    assert NID_Y not in d.text
    assert len(world.events("pii.search")) == 1


def test_disclosure_records_pii_disclose_derived_from_the_read(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")
    read = world.read(officer, 1, "name,address")
    assert read.status_code == 200, read.text
    read_event = read.json()["provenance"]["event_id"]
    body = {"dataset": DATASET, "record_id": "1", "fields": ["name", "address"],
            "recipient": {"type": "agency", "id": "agency-tax", "channel": "exchange-backbone"},
            "purpose": {"code": "benefit_review", "case_id": CASE, "legal_basis": "TCA-Art-30"},
            "derived_from": [read_event]}
    r = world.client.post("/v1/disclosures", headers=officer, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    disclosed = world.events("pii.disclose")
    assert len(disclosed) == 1
    ev = disclosed[0]
    assert ev.event_id == out["event_id"] and ev.derived_from == [read_event]
    assert ev.recipient.type == "agency" and ev.recipient.id == "agency-tax"
    assert ev.purpose.legal_basis == "TCA-Art-30" and ev.citizen_ref == world.ref_x
    assert sorted(ev.fields) == ["address", "name"] and ev.decision_id == out["decision_id"]

    # Only what was read can be passed on; lineage must be real; a legal basis or consent is required.
    bad = [
        ({**body, "fields": ["name", "bank_account"]}, "fields"),
        ({**body, "derived_from": ["01890000-0000-7000-8000-000000000000"]}, "derived_from"),
        ({**body, "record_id": "3"}, "derived_from"),
        ({**body, "purpose": {"code": "benefit_review", "case_id": CASE}}, "purpose"),
        ({**body, "recipient": {"type": "pigeon", "id": "x"}}, "recipient.type"),
    ]
    for payload, field in bad:
        resp = world.client.post("/v1/disclosures", headers=officer, json=payload)
        assert resp.status_code == 422, (field, resp.text)
        assert any(e["field"].startswith(field) for e in resp.json()["errors"]), (field, resp.text)
    assert len(world.events("pii.disclose")) == 1


def test_the_recipient_is_decided_on_not_just_recorded(world: World) -> None:
    """The PDP sees who receives the data: an agency needs an agreement for the dataset under the
    stated legal basis (fields outside it are withheld); a citizen recipient is the data subject."""
    officer = world.token("emp-officer", "case_officer")
    read = world.read(officer, 1, "name,address,phone")
    assert read.status_code == 200, read.text
    body = {"dataset": DATASET, "record_id": "1", "fields": ["name", "address"],
            "recipient": {"type": "agency", "id": "agency-unknown"},
            "purpose": {"code": "benefit_review", "case_id": CASE, "legal_basis": "TCA-Art-30"},
            "derived_from": [read.json()["provenance"]["event_id"]]}
    refused = [
        (body, "recipient_no_agreement"),
        ({**body, "recipient": {"type": "agency", "id": "agency-tax"},
          "purpose": {**body["purpose"], "legal_basis": "LSA-Art-7"}}, "legal_basis_mismatch"),
        ({**body, "recipient": {"type": "citizen", "id": world.ref_y},
          "purpose": {**body["purpose"], "legal_basis": "PDPA-Art-10"}}, "recipient_not_data_subject"),
    ]
    for payload, reason in refused:
        r = world.client.post("/v1/disclosures", headers=officer, json=payload)
        assert r.status_code == 403, (reason, r.text)
        assert reason in r.json()["reasons"], r.text
    assert world.events("pii.disclose") == []
    assert len(world.events("pii.denied")) == len(refused)

    # A national ID is never a recipient id (the decision log would hold it).
    r = world.client.post("/v1/disclosures", headers=officer,
                          json={**body, "recipient": {"type": "citizen", "id": NID_X}})
    assert r.status_code == 422 and NID_X not in r.text, r.text

    # Minimum necessary: the tax agency's agreement does not cover the phone number.
    r = world.client.post("/v1/disclosures", headers=officer, json={
        **body, "fields": ["name", "phone"], "recipient": {"type": "agency", "id": "agency-tax"}})
    assert r.status_code == 201, r.text
    assert r.json()["fields"] == ["name"] and r.json()["withheld_fields"] == ["phone"]
    (ev,) = world.events("pii.disclose")
    assert ev.fields == ["name"] and ev.recipient.id == "agency-tax"

    # The citizen themself may receive their own record.
    r = world.client.post("/v1/disclosures", headers=officer, json={
        **body, "recipient": {"type": "citizen", "id": world.ref_x},
        "purpose": {**body["purpose"], "legal_basis": "PDPA-Art-10"}})
    assert r.status_code == 201, r.text
    assert sorted(r.json()["fields"]) == ["address", "name"]


@pytest.mark.parametrize(("params", "headers", "field"), [
    ({"fields": "name,Bad-Field", "purpose": "benefit_review"}, {}, "query.fields"),
    ({"fields": "name,name", "purpose": "benefit_review"}, {}, "query.fields"),
    ({"fields": "name,salary", "purpose": "benefit_review"}, {}, "query.fields"),
    ({"fields": "name,ztcp_dek", "purpose": "benefit_review"}, {}, "query.fields"),
    ({"fields": "name"}, {}, "query.purpose"),
    ({"purpose": "benefit_review"}, {}, "query.fields"),
    ({"fields": "name", "purpose": "benefit review!"}, {}, "query.purpose"),
    ({"fields": "name", "purpose": "benefit_review"}, {"X-Network-Zone": "moon"}, "header.X-Network-Zone"),
    ({"fields": "name", "purpose": "benefit_review"}, {"X-Geo": "north"}, "header.X-Geo"),
    ({"fields": "name", "purpose": "benefit_review"}, {"X-Geo": "95,10"}, "header.X-Geo"),
    ({"fields": "name", "purpose": "benefit_review"}, {"X-Device-Id": "a b"}, "header.X-Device-Id"),
])
def test_bad_read_input_is_422_naming_the_field(world: World, params: dict, headers: dict, field: str) -> None:
    officer = {**world.token("emp-officer", "case_officer"), **headers}
    r = world.client.get(f"/v1/records/{DATASET}/1", params={**params, "case_id": CASE}, headers=officer)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]][0] == field
    assert world.events() == []


def test_bad_search_input_is_422_without_echoing_the_id(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")
    wrong_check = NID_X[:-1] + str((int(NID_X[-1]) + 1) % 10)
    cases = [
        ({"value": wrong_check, "purpose": "benefit_review"}, "value"),
        ({"value": NID_X}, "purpose"),
        ({"value": NID_X, "purpose": "benefit_review", "column": "name"}, "column"),
        ({"value": NID_X, "purpose": "benefit_review", "roles": ["supervisor"]}, "roles"),
    ]
    for payload, field in cases:
        r = world.client.post(f"/v1/records/{DATASET}/search", headers=officer, json=payload)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["errors"][0]["field"] == field
        assert wrong_check not in r.text and NID_X not in r.text
    assert world.events() == []


def test_unknown_dataset_record_and_missing_token(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")
    assert world.client.get("/v1/records/no_such/1", params={"fields": "name", "purpose": "benefit_review"},
                            headers=officer).status_code == 404
    for rid in (99, "abc", "9" * 40):
        r = world.read(officer, rid, "name")
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    anonymous = {k: v for k, v in officer.items() if k != "Authorization"}
    r = world.read(anonymous, 1, "name")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    forged = {**officer, "Authorization": officer["Authorization"][:-4] + "AAAA"}
    r = world.read(forged, 1, "name")
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert world.events() == []


def test_gateway_is_in_the_openapi_document(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert "/v1/records/{dataset}/{record_id}" in paths
    assert "post" in paths["/v1/records/{dataset}/search"] and "post" in paths["/v1/disclosures"]
    headers = {p["name"] for p in paths["/v1/records/{dataset}/{record_id}"]["get"]["parameters"]
               if p["in"] == "header"}
    assert {"X-Device-Id", "X-Device-Posture", "X-Client-Cert", "X-Network-Zone", "X-Channel", "X-Geo"} <= headers
    assert not {"X-Device-Managed", "X-Device-Compliant"} & headers  # posture is never taken from a header


def test_over_a_real_socket_the_client_ip_is_the_connection_peer(world: World, unused_tcp_port: int) -> None:
    # Only the bureau's reverse proxy (PROXY, not us) may set X-Forwarded-For and context headers;
    # `ztcp serve` turns uvicorn's own proxy handling off and the gateway decides whom to believe.
    server = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=unused_tcp_port, log_level="warning",
                                           lifespan="off", proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        officer = world.token("emp-officer", "case_officer")
        # A client-sent X-Forwarded-For (and zone) is not trusted: the peer address is what counts.
        r = httpx.get(f"http://127.0.0.1:{unused_tcp_port}/v1/records/{DATASET}/1",
                      params={"fields": "name", "purpose": "benefit_review", "case_id": CASE},
                      headers={**officer, "X-Forwarded-For": "203.0.113.9"}, timeout=10)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert r.status_code in (200, 401, 403), r.text
    world.rt.decision_log.flush()
    (entry,) = world.rt.decision_log.entries(last=1)
    ctx = entry["input"]["context"]
    assert ctx["ip"] == "127.0.0.1" and ctx["network_zone"] == "internet" and ctx["geo"] is None
    assert entry["input"]["device"]["id"] == "unknown"


def test_concurrent_reads_each_have_exactly_one_event(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: world.read(officer, 1 if i % 2 else 3, "name,address"), range(24)))
    assert [r.status_code for r in responses] == [200] * 24
    returned = sorted(r.json()["provenance"]["event_id"] for r in responses)
    assert sorted(e.event_id for e in world.events("pii.read")) == returned  # one each, none extra
    assert len(set(returned)) == 24


def test_an_obligation_the_gateway_cannot_fulfil_refuses_access() -> None:
    decision = Decision.model_validate({
        "decision_id": "0190a000-0000-7000-8000-000000000001", "effect": "permit",
        "risk": {"score": 0, "level": "low"}, "reasons": ["assigned_case"],
        "obligations": [{"type": "record_provenance"}, {"type": "watermark", "text": "x"}],
        "permitted_fields": ["name"], "policy": {"revision": "r1", "digest": None},
        "issued_at": "2026-01-05T01:00:00Z", "expires_at": "2026-01-05T01:01:00Z", "token": "t"})
    with pytest.raises(Problem) as exc:
        check_obligations(decision)
    assert exc.value.status == 403 and exc.value.extra["reasons"] == ["unfulfillable_obligation:watermark"]
    assert max_rows(decision) is None
    limited = decision.model_copy(update={"obligations": [{"type": "max_rows", "limit": 20},
                                                          {"type": "max_rows", "limit": 5}]})
    check_obligations(limited)
    assert max_rows(limited) == 5
    for bad in ({"type": "max_rows"}, {"type": "max_rows", "limit": "5"}, {"type": "max_rows", "limit": -1}):
        with pytest.raises(Problem) as exc:
            check_obligations(decision.model_copy(update={"obligations": [bad]}))
        assert exc.value.status == 403


def test_protected_database_gone_is_503(world: World) -> None:
    officer = world.token("emp-officer", "case_officer")
    assert world.read(officer, 1, "name").status_code == 200
    db = Path(_db_path(world.rt))
    db.rename(db.with_name("moved-away.db"))
    world.rt.protected_engine.dispose()  # pooled connections would still see the old file
    r = world.read(officer, 1, "name")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert PEOPLE[1][1] not in r.text
    assert len(world.events("pii.read")) == 1  # only the first, successful read
