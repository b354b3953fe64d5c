"""The provenance router behind the lead's real bearer auth (pdp.http_auth) and problem handlers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from provenance_testkit import cref, make_event

from pdp.http_auth import BearerAuth
from pdp.identity import JwtVerifier, StaticKeySource
from pdp.issuer import DevIssuer
from pdp.problems import install_problem_handlers
from provenance import Ledger, Recorder
from provenance.api import create_router

ISS = "https://idp.test"


@pytest.fixture
def setup(ledger: Ledger):  # noqa: ANN201
    issuer = DevIssuer(Ed25519PrivateKey.generate(), ISS, "ztcp")
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(
        create_router(ledger, Recorder(ledger), BearerAuth(JwtVerifier(StaticKeySource(issuer.jwks), ISS, "ztcp")))
    )
    with TestClient(app) as client:
        yield client, issuer


def test_pep_records_and_citizen_reads_with_real_tokens(setup, ledger: Ledger) -> None:  # noqa: ANN001
    client, issuer = setup
    pep = {"Authorization": "Bearer " + issuer.issue_client("counter-app", ["provenance:write"])}
    body = {"events": [make_event(i).model_dump(mode="json", exclude_none=True) for i in range(4)]}
    r = client.post("/v1/provenance/events", json=body, headers=pep)
    assert r.status_code == 200 and len(r.json()["receipts"]) == 4
    citizen = issuer.issue_subject("citizen-1", [], subject_type="citizen", citizen_ref=cref(0))
    acc = client.get("/v1/citizens/me/accesses", headers={"Authorization": "Bearer " + citizen}).json()["accesses"]
    assert len(acc) == 2 and all(a["staff"] is None for a in acc)


def test_auth_failures_are_problem_json(setup) -> None:  # noqa: ANN001
    client, issuer = setup
    r = client.post("/v1/provenance/events", json={"events": []})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    reader = {"Authorization": "Bearer " + issuer.issue_client("dash", ["provenance:read"])}
    r = client.post("/v1/provenance/events", json={"events": []}, headers=reader)
    assert r.status_code == 403 and "provenance:write" in r.json()["detail"]
    staff = issuer.issue_subject("clerk", ["counter_clerk"])
    assert client.get("/v1/citizens/me/accesses", headers={"Authorization": "Bearer " + staff}).status_code == 403
