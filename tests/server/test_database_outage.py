"""The shared database (ZTCP_DATABASE_URL) lost while serving (issue #12, faults): a real PostgreSQL
stopped under the application and started again.

While it is down, ``POST /v1/decisions`` answers 503 (never a 200 deny a caller could take for the
policy's answer) once the decision log or the signal history cannot do its part, and the gateway
answers 503 — never 403, never plaintext. When the server is back, both resume by themselves (no
restart), every decision the log accepted is in it, and every 2xx read has exactly one ``pii.read``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import contracts
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(insured)  # type: ignore[union-attr]

CASE = "C-OUT-0001"
PROXY = "192.0.2.10"
INTERNAL = {"X-Device-Id": "dev-out-1", "X-Network-Zone": "internal", "X-Channel": "counter", "X-Geo": "25.04,121.56"}
PLAINTEXT = [v for person in insured.PEOPLE.values() for v in person]


@pytest.fixture
def served(tmp_path, pg_factory):  # noqa: ANN001, ANN201
    pg = pg_factory()
    settings = load_settings(home=tmp_path / "home", database_url=pg.url(pg.create_database()),
                             engine_timeout_ms=2000, trusted_proxies=[PROXY])
    rt = Runtime(settings)
    rt.keys.ensure_all()
    rt.device_inventory.register("dev-out-1", managed=True, compliant=True, actor="test")
    insured.write_bureau(rt.home, CASE, contracts.citizen_ref(insured.NID_X, rt.keys.blind_index),
                         ["emp-officer"], rt)
    insured.create_encrypted_table(rt, insured.PEOPLE)
    with TestClient(create_app(rt), client=(PROXY, 50000), raise_server_exceptions=False) as client:
        yield pg, rt, client
    rt.close()


def _decision_body(rt: Runtime) -> dict:
    token = rt.issuer.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True)
    return {"subject_token": token, "device": {"id": "dev-1", "managed": True, "compliant": True},
            "context": {"network_zone": "internal", "channel": "counter"},
            "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                         "citizen_ref": "cr_SAMPLE" + "A" * 45 + "B", "fields": ["name", "address"]},
            "action": "read", "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"}}


def test_decisions_and_reads_answer_503_without_plaintext_while_the_database_is_down(served) -> None:  # noqa: ANN001
    pg, rt, client = served
    caller = {"Authorization": f"Bearer {rt.issuer.issue_client('counter-app', ['pdp:decide'])}"}
    officer = {"Authorization": "Bearer " + rt.issuer.issue_subject("emp-officer", ["case_officer"], method="fido2",
                                                                  mfa=True, org_unit="taipei-01"), **INTERNAL}
    reads_ok, decisions_ok = 0, []

    def decide() -> object:
        r = client.post("/v1/decisions", json=_decision_body(rt), headers=caller)
        if r.status_code == 200:
            decisions_ok.append(r.json()["decision_id"])
        return r

    def read() -> object:
        nonlocal reads_ok
        r = client.get(f"/v1/records/{insured.DATASET}/1", params={"fields": "name,address", "purpose":
                       "benefit_review", "case_id": CASE}, headers=officer)
        reads_ok += r.status_code == 200
        return r

    assert decide().json()["effect"] == "permit"
    assert read().status_code == 200
    assert rt.decision_log.flush() and rt.history.flush()

    pg.stop("fast")
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 30
    while True:  # until the log has noticed: then every decision is 503
        d = decide()
        g = read()
        seen += [("decide", d.status_code), ("read", g.status_code)]
        assert d.status_code in (200, 503), d.text
        if d.status_code == 200:  # accepted by the log before it tried to write: it must keep it
            assert d.json()["effect"] == "permit"
        assert g.status_code == 503, g.text  # the ledger cannot record: never plaintext, never 403
        assert not any(v in g.text for v in PLAINTEXT)
        if d.status_code == 503:
            break
        assert time.monotonic() < deadline, "the decision log never noticed the outage"
    time.sleep(rt.history.max_lag + 0.2)  # past the staleness bound: the signals cannot be vouched for either
    for _ in range(3):
        d, g = decide(), read()
        assert d.status_code == 503 and d.headers["retry-after"] and "token" not in d.json(), d.text
        assert d.headers["content-type"].startswith("application/problem+json")
        assert set(d.json()["reasons"]) <= {"decision_log_unavailable", "signal_history_unavailable"}
        assert g.status_code == 503 and g.json()["type"] == "urn:ztcp:problem:pdp-unavailable", g.text
        assert g.headers["retry-after"] and not any(v in g.text for v in PLAINTEXT)
    batch = client.post("/v1/decisions/batch", json={"requests": [_decision_body(rt)] * 2}, headers=caller)
    assert batch.status_code == 503, batch.text
    ready = client.get("/readyz")
    assert ready.status_code == 503  # HAProxy takes this replica out of rotation meanwhile

    pg.start()
    deadline = time.monotonic() + 30
    while decide().status_code != 200 or read().status_code != 200:  # no restart: it reconnects by itself
        assert time.monotonic() < deadline, "service did not resume after the database came back"
        time.sleep(0.2)
    assert decide().json()["effect"] == "permit"
    assert rt.decision_log.flush()
    logged = {e["decision_id"] for e in rt.decision_log.entries(since=0)}
    assert set(decisions_ok) <= logged  # nothing acknowledged lost
    store = rt.ledger.store
    deadline = time.monotonic() + 20
    while store.size() < store.sequenced_size():  # acknowledged appends, integrated into the tree
        assert time.monotonic() < deadline, "the integrator did not catch up"
        time.sleep(0.1)
    rt.ledger.refresh()
    reads = [e for e in (x.event for x in rt.ledger.entries()) if e.type == "pii.read"]
    assert len(reads) == reads_ok >= 2  # every 2xx read exactly one pii.read; none for the refused ones


def test_the_openapi_schema_documents_the_503s(served) -> None:  # noqa: ANN001
    _, _, client = served
    paths = client.get("/openapi.json").json()["paths"]
    assert "503" in paths["/v1/decisions"]["post"]["responses"]
    assert "503" in paths["/v1/decisions/batch"]["post"]["responses"]
    assert "503" in paths["/v1/records/{dataset}/{record_id}"]["get"]["responses"]
