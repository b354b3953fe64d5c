"""The read route's fast path (gateway.routes.FastRead, issue #16): a read in order is answered
without FastAPI's generic handler, byte for byte what that handler answers; everything else is
handed to it, so refusals keep the shape the OpenAPI schema declares. Real components, as in
test_gateway.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

import contracts
from gateway.routes import FastRead
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

CASE = "C-FAST-0001"
PROXY = "192.0.2.10"
INTERNAL = {"X-Device-Id": "dev-fr-1", "X-Network-Zone": "internal", "X-Channel": "counter", "X-Geo": "25.04,121.56"}
PATH = f"/v1/records/{insured.DATASET}/1"
PARAMS = {"fields": "name,address", "purpose": "benefit_review", "case_id": CASE}


@pytest.fixture
def world(ztcp_home: Path, monkeypatch: pytest.MonkeyPatch):
    rt = Runtime(load_settings(engine_timeout_ms=2000, trusted_proxies=[PROXY]))
    rt.keys.ensure_all()
    rt.device_inventory.register("dev-fr-1", managed=True, compliant=True, actor="test")
    insured.write_bureau(ztcp_home, CASE, contracts.citizen_ref(insured.NID_X, rt.keys.blind_index),
                         ["emp-officer"], rt)
    insured.create_encrypted_table(rt, insured.PEOPLE)
    calls: list[str] = []  # the requests handed to FastAPI's generic handler
    built = FastRead.__init__

    def counting(self: FastRead, generic, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        async def counted(request):  # noqa: ANN001, ANN202
            calls.append(request.scope["method"])
            return await generic(request)

        built(self, counted, *args, **kwargs)

    monkeypatch.setattr(FastRead, "__init__", counting)
    token = rt.issuer.issue_subject("emp-officer", ["case_officer"], method="fido2", mfa=True, org_unit="taipei-01")
    with TestClient(create_app(rt), client=(PROXY, 50000)) as client:
        yield rt, client, {"Authorization": f"Bearer {token}", **INTERNAL}, calls
    rt.close()


def _reads(rt: Runtime) -> int:
    return sum(1 for e in rt.ledger.entries() if e.event.type == "pii.read")


def test_a_read_in_order_is_answered_by_the_fast_path_as_the_generic_route_would(
        world, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    rt, client, headers, calls = world
    r = client.get(PATH, params=PARAMS, headers=headers)
    assert r.status_code == 200, r.text
    assert calls == [] and _reads(rt) == 1
    assert r.headers["cache-control"] == "no-store" and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["fields"]["name"] and body["provenance"]["event_id"] and body["withheld_fields"] == []

    # The same read through FastAPI's own handler: the same document, key for key (ids differ).
    monkeypatch.setattr(FastRead, "params", lambda self, scope: None)
    g = client.get(PATH, params=PARAMS, headers=headers)
    assert g.status_code == 200 and calls == ["GET"] and _reads(rt) == 2
    assert g.headers["cache-control"] == "no-store"
    other = g.json()
    for volatile in ("decision_id", "provenance", "obligations_applied"):
        body.pop(volatile), other.pop(volatile)
    assert orjson.dumps(body) == orjson.dumps(other)


@pytest.mark.parametrize("params, headers_change, status", [
    ({**PARAMS, "purpose": "bad purpose!"}, {}, 422),             # off-pattern: FastAPI names it
    ({"fields": "name", "case_id": CASE}, {}, 422),                # purpose missing
    ({**PARAMS, "case_id": ""}, {}, 422),                          # blank
    (PARAMS, {"Authorization": "Bearer not-a-token"}, 401),       # bad token
    (PARAMS, {"Authorization": None}, 401),                        # no token
])
def test_anything_not_in_order_goes_to_fastapis_handler(world, params, headers_change, status) -> None:  # noqa: ANN001
    rt, client, headers, calls = world
    sent = {k: v for k, v in {**headers, **headers_change}.items() if v is not None}
    r = client.get(PATH, params=params, headers=sent)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert calls == ["GET"] and _reads(rt) == 0


def test_repeated_parameters_and_head_are_left_to_fastapi(world) -> None:  # noqa: ANN001
    rt, client, headers, calls = world
    r = client.get(f"{PATH}?fields=name&fields=address&purpose=benefit_review&case_id={CASE}", headers=headers)
    assert calls == ["GET"], r.text
    head = client.head(PATH, params=PARAMS, headers=headers)
    assert head.status_code == 405 or calls[-1] == "HEAD"  # refused before any handler, or FastAPI's


def test_refusals_from_the_gateway_keep_their_problem_shape_on_the_fast_path(world) -> None:  # noqa: ANN001
    rt, client, headers, calls = world
    missing = client.get(f"/v1/records/{insured.DATASET}/99", params=PARAMS, headers=headers)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    unknown_field = client.get(PATH, params={**PARAMS, "fields": "name,shoe_size"}, headers=headers)
    assert unknown_field.status_code == 422 and unknown_field.json()["errors"][0]["field"] == "query.fields"
    no_case = client.get(PATH, params={"fields": "name", "purpose": "benefit_review"}, headers=headers)
    assert no_case.status_code in (401, 403), no_case.text
    assert no_case.headers["content-type"].startswith("application/problem+json")
    assert calls == [] and _reads(rt) == 0
