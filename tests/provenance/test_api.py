"""The provenance HTTP API through FastAPI's TestClient, with a small real bearer-token auth."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from provenance_testkit import cref, make_event

from provenance import Ledger, Recorder, merkle
from provenance.api import create_router


@dataclass
class Identity:
    sub: str
    scopes: set[str] = field(default_factory=set)
    type: str = "staff"
    roles: list[str] = field(default_factory=list)
    citizen_ref: str | None = None

    @property
    def client_id(self) -> str:
        return self.sub


class BearerMapAuth:
    """Test implementation of the lead's auth protocol: verifies bearer tokens against a fixed map."""

    def __init__(self, tokens: dict[str, Identity]) -> None:
        self.tokens = tokens

    def _identity(self, authorization: str | None) -> Identity:
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(401, "missing bearer token")
        ident = self.tokens.get(authorization[7:])
        if ident is None:
            raise HTTPException(401, "invalid token")
        return ident

    def require_scope(self, scope: str):  # noqa: ANN201
        def dep(authorization: str | None = Header(default=None)) -> Identity:
            ident = self._identity(authorization)
            if scope not in ident.scopes:
                raise HTTPException(403, f"missing scope {scope}")
            return ident

        return dep

    def require_subject(self):  # noqa: ANN201
        def dep(authorization: str | None = Header(default=None)) -> Identity:
            return self._identity(authorization)

        return dep


W = {"Authorization": "Bearer writer"}
R = {"Authorization": "Bearer reader"}


@pytest.fixture
def sealed() -> set[str]:
    return set()


@pytest.fixture
def client(ledger: Ledger, sealed: set[str]) -> Iterator[TestClient]:
    auth = BearerMapAuth(
        {
            "writer": Identity("counter-app", {"provenance:write"}),
            "reader": Identity("audit-console", {"provenance:read"}),
            "citizen": Identity("citizen-1", type="citizen", citizen_ref=cref(0)),
            "staff": Identity("staff-9", type="staff"),
        }
    )
    app = FastAPI()
    app.include_router(create_router(ledger, Recorder(ledger), auth, sealed_cases=lambda: sealed))
    with TestClient(app) as c:
        yield c


def _ev(i: int, **kw) -> dict:
    return make_event(i, **kw).model_dump(mode="json", exclude_none=True)


def test_post_events_returns_seq_and_leaf_hash(client: TestClient, ledger: Ledger) -> None:
    evs = [_ev(i) for i in range(3)]
    r = client.post("/v1/provenance/events", json={"events": evs}, headers=W)
    assert r.status_code == 200, r.text
    got = r.json()["receipts"]
    assert [g["seq"] for g in got] == [0, 1, 2]
    assert base64.b64decode(got[1]["leaf_hash"]) == ledger.get(1).leaf_hash
    again = client.post("/v1/provenance/events", json={"events": [evs[1]]}, headers=W).json()["receipts"][0]
    assert again["seq"] == 1 and again["duplicate"] is True
    assert ledger.size == 3


def test_a_writer_records_only_its_own_accesses_and_only_now(client: TestClient, ledger: Ledger) -> None:
    # Issue #13 finding 8: a provenance:write caller could append events for any system at any time.
    from datetime import UTC, datetime, timedelta

    stamped = client.post("/v1/provenance/events", json={"events": [_ev(0, via={"channel": "api"})]}, headers=W)
    assert stamped.status_code == 200, stamped.text
    assert ledger.get(0).event.via.system == "counter-app"  # stamped with the caller's own client id
    other = client.post("/v1/provenance/events", json={"events": [_ev(1, via={"system": "tax-gateway"})]}, headers=W)
    assert other.status_code == 403 and other.json()["errors"][0]["field"] == "events.0.via.system"
    old = _ev(2, time=datetime.now(UTC) - timedelta(days=30))
    late = client.post("/v1/provenance/events", json={"events": [old]}, headers=W)
    assert late.status_code == 422 and late.json()["errors"][0]["field"] == "events.0.time"
    audit = _ev(3, type="audit.trace")
    assert client.post("/v1/provenance/events", json={"events": [audit]}, headers=W).status_code == 403
    assert ledger.size == 1  # nothing of the refused batches was recorded


def test_post_requires_write_scope(client: TestClient) -> None:
    body = {"events": [_ev(1)]}
    assert client.post("/v1/provenance/events", json=body).status_code == 401
    assert client.post("/v1/provenance/events", json=body, headers=R).status_code == 403


def test_raw_national_id_is_422_naming_field_without_value(client: TestClient, ledger: Ledger) -> None:
    bad = _ev(1)
    bad["record_id"] = "F131104093"
    r = client.post("/v1/provenance/events", json={"events": [_ev(0), bad]}, headers=W)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "events.1.record_id"
    assert "F131104093" not in r.text
    assert ledger.size == 0  # the whole batch is refused


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "(body)"),
        (b'{"events": []}', "events"),
        (b'{"events": [{"type": "pii.read"}]}', "events.0.actor"),
        (b'{"events": [{"type": "pii.read", "actor": "a", "time": "yesterday"}]}', "events.0.time"),
        (b'{"evts": []}', "events"),
        (b'{"events": [{"type": "pii.read", "actor": "a", "record_id": "x\\ud800"}]}', "(body)"),  # invalid JSON text
    ],
)
def test_malformed_input_is_422(client: TestClient, body: bytes, field: str) -> None:
    r = client.post("/v1/provenance/events", content=body, headers={**W, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]


def test_batch_limit(client: TestClient) -> None:
    r = client.post("/v1/provenance/events", json={"events": [_ev(i) for i in range(1001)]}, headers=W)
    assert r.status_code == 413 and r.json()["status"] == 413


def test_checkpoint_and_proofs(client: TestClient, ledger: Ledger) -> None:
    assert client.get("/v1/provenance/checkpoint", headers=R).status_code == 404
    client.post("/v1/provenance/events", json={"events": [_ev(i) for i in range(11)]}, headers=W)
    ledger.checkpoint()
    cp = client.get("/v1/provenance/checkpoint", headers=R).json()
    assert cp["size"] == 11 and cp["note"].startswith("ztcp.test/provenance\n11\n")
    root = base64.b64decode(cp["root"])
    inc = client.get("/v1/provenance/proofs/inclusion?seq=4&size=11", headers=R).json()
    merkle.verify_inclusion(
        base64.b64decode(inc["leaf_hash"]), 4, 11, [base64.b64decode(h) for h in inc["proof"]], root
    )
    con = client.get("/v1/provenance/proofs/consistency?from=3&to=11", headers=R).json()
    merkle.verify_consistency(3, 11, [base64.b64decode(h) for h in con["proof"]], base64.b64decode(con["root1"]), root)
    assert client.get("/v1/provenance/proofs/inclusion?seq=x", headers=R).json()["errors"][0]["field"] == "seq"
    assert client.get("/v1/provenance/proofs/inclusion", headers=R).status_code == 422
    assert client.get("/v1/provenance/proofs/inclusion?seq=50&size=11", headers=R).status_code == 404
    assert client.get("/v1/provenance/proofs/consistency?from=5&to=2", headers=R).status_code == 422
    assert client.get("/v1/provenance/proofs/consistency?from=1&to=99", headers=R).status_code == 404


def test_citizen_events_are_proven_and_the_read_is_recorded(client: TestClient, ledger: Ledger) -> None:
    client.post("/v1/provenance/events", json={"events": [_ev(i) for i in range(6)]}, headers=W)
    ledger.checkpoint()
    r = client.get(f"/v1/provenance/citizens/{cref(0)}/events", headers=R)
    assert r.status_code == 200
    body = r.json()
    assert [e["seq"] for e in body["events"]] == [0, 3, 6]
    assert [e["proof_status"] for e in body["events"]] == ["verified", "verified", "pending"]
    assert body["events"][2]["event"]["type"] == "audit.read"  # the query is part of the citizen's record
    last = ledger.get(ledger.size - 1).event
    assert last.type == "audit.read" and last.actor.id == "audit-console" and last.citizen_ref == cref(0)
    assert client.get("/v1/provenance/citizens/A123456789/events", headers=R).status_code == 422


def test_citizen_view_hides_staff_and_sealed_cases(client: TestClient, sealed: set[str]) -> None:
    evs = [
        _ev(0, purpose={"code": "benefit-review", "case_id": "OPEN-1"}),
        _ev(3, purpose={"code": "fraud-investigation", "case_id": "SEALED-7"}),
        _ev(6, type="pii.denied", effect="deny"),
    ]
    client.post("/v1/provenance/events", json={"events": evs}, headers=W)
    sealed.add("SEALED-7")
    r = client.get("/v1/citizens/me/accesses", headers={"Authorization": "Bearer citizen"})
    assert r.status_code == 200
    acc = r.json()["accesses"]
    assert [a["purpose"] for a in acc] == ["benefit-review"]
    assert acc[0]["unit"] == "Taipei District Office" and acc[0]["agency"] == "BLI" and acc[0]["staff"] is None
    assert "staff-" not in r.text
    sealed.clear()  # case closed: the investigation's reads appear
    acc = client.get("/v1/citizens/me/accesses", headers={"Authorization": "Bearer citizen"}).json()["accesses"]
    assert sorted(a["purpose"] for a in acc) == ["benefit-review", "fraud-investigation"]


def test_citizen_view_needs_citizen_token(client: TestClient) -> None:
    assert client.get("/v1/citizens/me/accesses").status_code == 401
    assert client.get("/v1/citizens/me/accesses", headers={"Authorization": "Bearer staff"}).status_code == 403
