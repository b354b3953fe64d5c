"""The HTTP API through the real application (composition root, keyring, default pack)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings


@pytest.fixture
def runtime():
    # A generous budget: these tests are about the API, and a loaded CI box must not turn a 2 ms
    # evaluation into an engine_timeout deny (the timeout itself is tested in test_point.py).
    rt = Runtime(load_settings(engine_timeout_ms=2000))
    yield rt
    rt.close()


@pytest.fixture
def client(runtime):
    with TestClient(create_app(runtime), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def caller(runtime):
    return runtime.issuer.issue_client("counter-app", ["pdp:decide"])


def body(runtime, **kw) -> dict:
    token = runtime.issuer.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True)
    doc = {
        "subject_token": token,
        "device": {"id": "dev-1", "managed": True, "compliant": True},
        "context": {"network_zone": "internal", "channel": "counter"},
        "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                     "citizen_ref": "cr_SAMPLE" + "A" * 45 + "B", "fields": ["name", "address"]},
        "action": "read",
        "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"},
    }
    doc.update(kw)
    return doc


def test_no_caller_token_is_401_problem(client, runtime):
    r = client.post("/v1/decisions", json=body(runtime))
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["status"] == 401


def test_wrong_scope_is_403(client, runtime):
    token = runtime.issuer.issue_client("reporting", ["provenance:read"])
    r = client.post("/v1/decisions", json=body(runtime), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert "pdp:decide" in r.json()["detail"]


def test_subject_token_cannot_be_used_as_caller_token(client, runtime):
    subject = runtime.issuer.issue_subject("emp-0042", ["supervisor"], method="fido2", mfa=True)
    r = client.post("/v1/decisions", json=body(runtime), headers={"Authorization": f"Bearer {subject}"})
    assert r.status_code == 401
    assert "wrong_token_type" in r.json()["detail"]


def test_decision_over_http_with_verifiable_token(client, runtime, caller):
    r = client.post("/v1/decisions", json=body(runtime), headers={"Authorization": f"Bearer {caller}"})
    assert r.status_code == 200, r.text
    decision = r.json()
    assert decision["effect"] in ("permit", "step_up"), decision["reasons"]  # off-hours may raise risk
    assert decision["risk"]["factors"] is not None
    if decision["effect"] == "permit":
        claims = runtime.decision_verifier.verify(decision["token"])
        assert claims.decision_id == decision["decision_id"]
    jwks = client.get("/.well-known/jwks.json").json()
    assert {k["kid"] for k in jwks["keys"]} >= {runtime.decision_signer.kid}


@pytest.mark.parametrize("mutation,field", [
    (lambda d: d.pop("action"), "action"),
    (lambda d: d.update(action="delete_everything"), "action"),
    (lambda d: d["context"].update(network_zone="moon"), "context.network_zone"),
    (lambda d: d["resource"].update(citizen_ref="A123456789"), "resource.citizen_ref"),
    (lambda d: d["resource"].update(fields=["name", "name"]), "resource.fields"),
    (lambda d: d.update(subject={"roles": ["supervisor"]}), "subject"),
])
def test_bad_input_is_422_naming_the_field(client, runtime, caller, mutation, field):
    doc = body(runtime)
    mutation(doc)
    r = client.post("/v1/decisions", json=doc, headers={"Authorization": f"Bearer {caller}"})
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    assert "A123456789" not in r.text  # the offending value is never echoed


def test_not_json_is_4xx_not_500(client, caller):
    r = client.post("/v1/decisions", content=b"\x00\xff{", headers={"Authorization": f"Bearer {caller}",
                                                                     "content-type": "application/json"})
    assert 400 <= r.status_code < 500


def test_malformed_json_names_line_and_column_not_a_field(client, caller):
    """A broken body used to come back as "invalid field(s): 33" (FastAPI's character offset)."""
    text = '{\n  "action": "read",\n  "device": {"id": "d1"} "context": {}\n}'
    r = client.post("/v1/decisions", content=text.encode(), headers={"Authorization": f"Bearer {caller}",
                                                                     "content-type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    column = text.splitlines()[2].index('"context"') + 1
    assert problem["detail"] == f"malformed JSON at line 3, column {column}: Expecting ',' delimiter", problem
    assert problem["errors"] == [{"field": "body", "message": problem["detail"]}]
    assert "d1" not in r.text  # the body is never echoed


def test_batch_limit_and_order(client, runtime, caller):
    docs = [body(runtime), body(runtime, action="export")]
    r = client.post("/v1/decisions/batch", json={"requests": docs}, headers={"Authorization": f"Bearer {caller}"})
    assert r.status_code == 200
    effects = [d["effect"] for d in r.json()["decisions"]]
    assert len(effects) == 2 and effects[1] == "deny"  # a case officer may not export
    too_many = {"requests": [body(runtime)] * 1001}
    r = client.post("/v1/decisions/batch", json=too_many, headers={"Authorization": f"Bearer {caller}"})
    assert r.status_code == 422


def test_get_decision_needs_auditor_scope(client, runtime, caller):
    r = client.post("/v1/decisions", json=body(runtime), headers={"Authorization": f"Bearer {caller}"})
    decision_id = r.json()["decision_id"]
    r = client.get(f"/v1/decisions/{decision_id}", headers={"Authorization": f"Bearer {caller}"})
    assert r.status_code == 403
    auditor = runtime.issuer.issue_client("audit-console", ["pdp:audit"])
    r = client.get(f"/v1/decisions/{decision_id}", headers={"Authorization": f"Bearer {auditor}"})
    assert r.status_code == 200
    assert r.json()["decision_id"] == decision_id
    assert r.json()["requested_by"] == "counter-app"
    r = client.get("/v1/decisions/not-a-uuid", headers={"Authorization": f"Bearer {auditor}"})
    assert r.status_code == 422


def test_ready_health_metrics(client, runtime, caller):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["policy"]["revision"] == "r1"
    client.post("/v1/decisions", json=body(runtime), headers={"Authorization": f"Bearer {caller}"})
    text = client.get("/metrics").text
    assert "ztcp_decisions_total" in text and "ztcp_decision_latency_seconds_bucket" in text


def test_readyz_reports_a_broken_decision_log(client, runtime):
    runtime.point.log._healthy = False
    runtime.point.log.last_error = "disk I/O error"
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["decision_log"]["error"] == "disk I/O error"


def test_200_concurrent_requests_all_answered(runtime, caller, unused_tcp_port):
    app = create_app(runtime)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=unused_tcp_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    docs = [body(runtime) for _ in range(200)]

    async def fire() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{unused_tcp_port}", limits=limits,
                                     timeout=30) as http:
            responses = await asyncio.gather(*[
                http.post("/v1/decisions", json=d, headers={"Authorization": f"Bearer {caller}"}) for d in docs])
        return [r.status_code for r in responses]

    try:
        codes = asyncio.run(fire())
    finally:
        server.should_exit = True
        thread.join(10)
    assert codes == [200] * 200
    assert runtime.point.log.flush()
    assert runtime.point.log.count() == 200


def test_bundle_service_serves_the_active_signed_bundle_with_etag(client, runtime):
    token = runtime.issuer.issue_client("opa-sidecar", ["bundles:read"])
    r = client.get("/v1/bundles/ztcp", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.content[:2] == b"\x1f\x8b"  # gzip
    etag = r.headers["etag"]
    again = client.get("/v1/bundles/ztcp", headers={"Authorization": f"Bearer {token}", "If-None-Match": etag})
    assert again.status_code == 304
    assert client.get("/v1/bundles/ztcp").status_code == 401


def test_provenance_endpoints_are_served(client, runtime):
    writer = runtime.issuer.issue_client("registry-app", ["provenance:write"])
    event = {"type": "pii.read", "actor": {"id": "emp-0042", "unit": "taipei-03"},
             "via": {"system": "registry-app", "channel": "counter"}, "citizen_ref": "cr_SAMPLE" + "A" * 45 + "B",
             "dataset": "insured_persons", "record_id": "r-1", "fields": ["name"],
             "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"}}
    r = client.post("/v1/provenance/events", json={"events": [event]}, headers={"Authorization": f"Bearer {writer}"})
    assert r.status_code in (200, 201), r.text
    reader = runtime.issuer.issue_client("audit-console", ["provenance:read"])
    runtime.ledger.checkpoint()  # on demand (the recorder also signs every N events / T seconds)
    r = client.get("/v1/provenance/checkpoint", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 200
    assert client.get("/readyz").json()["checks"]["ledger"]["size"] >= 1


def test_decision_route_fast_path_keeps_the_schema_and_hands_refusals_to_fastapi(client, runtime, caller):
    """POST /v1/decisions answers well-formed calls itself and replays everything else to FastAPI's
    handler: the schema still names the body and answer models, and refusals are the usual problems."""
    spec = client.get("/openapi.json").json()["paths"]["/v1/decisions"]["post"]
    assert spec["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/DecisionRequest")
    assert spec["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Decision")
    auth = {"Authorization": f"Bearer {caller}"}
    ok = client.post("/v1/decisions", json=body(runtime), headers=auth)
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    assert ok.json()["decision_id"] and ok.json()["effect"] in ("permit", "step_up")
    refusals = [
        (client.post("/v1/decisions", content=b"{nope", headers={**auth, "content-type": "application/json"}),
         422, "body"),  # JSON that does not parse: the body, with line and column in the message
        (client.post("/v1/decisions", json={**body(runtime), "action": "fly"}, headers=auth), 422, "action"),
        (client.post("/v1/decisions", content=b"{}", headers={**auth, "content-type": "text/plain"}), 422, "body"),
        (client.post("/v1/decisions", json={**body(runtime), "action": "fly"}), 401, None),  # auth before the model
    ]
    for response, status, field in refusals:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        if field:
            assert [e["field"] for e in response.json()["errors"]] == [field]


def test_a_well_formed_decision_is_answered_by_the_fast_path(client, runtime, caller, monkeypatch):
    """FastAPI's generic handler is not reached for a call that is in order (FastAPI 0.165 once
    bypassed the fast path silently: every decision paid the framework again)."""
    import pdp.api

    def generic_reached(model):  # noqa: ANN001, ANN202 - only the generic handler serialises with _json
        raise AssertionError("the generic handler answered a well-formed decision")

    monkeypatch.setattr(pdp.api, "_json", generic_reached)
    ok = client.post("/v1/decisions", json=body(runtime), headers={"Authorization": f"Bearer {caller}"})
    assert ok.status_code == 200 and ok.json()["decision_id"]
