"""No raw national ID at rest, whatever field it is pushed through (issue #13, finding 3).

A property test: national-ID shapes (ASCII, lower-case, full-width, with spaces or dashes) go
through every field of every API that takes one — the gateway's paths, query, headers and bodies,
the decision API, the provenance API — each request answered however the server likes (a 4xx is
fine). Then every file under ``ZTCP_HOME`` (the decision log, the ledger, the signal history, the
SIEM store fed from them, the protected database, the logs) is searched, byte for byte, for every
form of each ID. The only place a national ID may be is encrypted, or as a keyed reference.
"""

from __future__ import annotations

import importlib.util
import itertools
import unicodedata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings
from server.siem import live_sources, make_engine

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

PROXY = "192.0.2.10"
CASE = "C-PII-0001"
LETTERS = "ABCDEFGHJKLMNPQRSTUVXYWZIO"


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@st.composite
def national_ids(draw: st.DrawFn) -> tuple[str, str]:
    """(canonical ID, the form it is written in)."""
    prefix = draw(st.sampled_from(LETTERS)) + draw(st.sampled_from("12")) + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=7, max_size=7)))
    nid = prefix + contracts.national_id_check_digit(prefix)
    form = draw(st.sampled_from(["ascii", "lower", "full", "spaced", "dashed"]))
    written = {"ascii": nid, "lower": nid.lower(), "full": _full_width(nid),
               "spaced": f"{nid[0]} {nid[1:4]} {nid[4:7]} {nid[7:]}",
               "dashed": f"{nid[:4]}-{nid[4:7]}-{nid[7:]}"}[form]
    return nid, written


FIELDS = ["gw.path.record_id", "gw.path.dataset", "gw.query.purpose", "gw.query.case_id", "gw.query.fields",
          "gw.header.device", "gw.header.channel", "gw.search.purpose", "gw.search.case_id",
          "gw.update.purpose", "gw.update.case_id", "gw.disclose.recipient", "gw.disclose.channel",
          "gw.disclose.purpose", "pdp.device", "pdp.channel", "pdp.record_id", "pdp.dataset", "pdp.purpose",
          "pdp.case_id", "pdp.legal_basis", "pdp.consent_id", "pdp.justification", "pdp.recipient",
          "prov.record_id", "prov.case_id", "prov.actor", "prov.channel", "prov.recipient_name",
          "ex.batch.citizens", "ex.batch.agreement_id", "ex.batch.fields", "ex.receipt"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("pii") / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("ZTCP_HOME", str(home))
    rt = Runtime(load_settings(engine_timeout_ms=2000, trusted_proxies=[PROXY]))
    rt.keys.ensure_all()
    rt.device_inventory.register("dev-pii-1", managed=True, compliant=True, actor="test")
    insured.write_bureau(rt.home, CASE, contracts.citizen_ref(insured.NID_X, rt.keys.blind_index), ["emp-officer"],
                         rt)
    insured.create_encrypted_table(rt, insured.PEOPLE)
    # An agreement with the agency's keys, so exchange batches really run (sealed payloads in the home).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from exchange.crypto import public_jwk

    keys = {"receipt_key": public_jwk(Ed25519PrivateKey.generate().public_key()),
            "encryption_key": public_jwk(X25519PrivateKey.generate().public_key())}
    insured.publish_registers(rt, {"agreements": {"agency-tax": [
        {"id": "DSA-PII-1", "dataset": insured.DATASET, "fields": ["name", "national_id"],
         "legal_basis": "TCA-Art-30", "expires": "2099-12-31T00:00:00Z", "status": "approved", **keys}]}})
    app = create_app(rt)
    with TestClient(app, client=(PROXY, 50000)) as client:
        yield rt, client
    rt.close()
    mp.undo()


def _send(rt: Runtime, client: TestClient, field: str, value: str) -> None:
    officer = rt.issuer.issue_subject("emp-officer", ["case_officer"], method="fido2", mfa=True,
                                      org_unit="taipei-01")
    pep = rt.issuer.issue_client("pii-pep", ["pdp:decide", "provenance:write"])
    base = {"Authorization": f"Bearer {officer}", "X-Device-Id": "dev-pii-1", "X-Network-Zone": "internal",
            "X-Geo": "25.04,121.56", "X-Channel": "counter"}
    ds, rid = insured.DATASET, "1"
    query = {"fields": "name", "purpose": "benefit_review", "case_id": CASE}
    area, _, name = field.partition(".")
    if area == "gw":
        kind, _, part = name.partition(".")
        if kind == "path":
            target = {"record_id": f"/v1/records/{ds}/{value}", "dataset": f"/v1/records/{value}/1"}[part]
            client.get(target, params=query, headers=base)
        elif kind == "query":
            client.get(f"/v1/records/{ds}/{rid}", params={**query, part: value}, headers=base)
        elif kind == "header":
            header = {"device": "X-Device-Id", "channel": "X-Channel"}[part]
            # HTTP headers are Latin-1: a full-width form cannot travel in one, its NFKC form can.
            value = value if value.isascii() else unicodedata.normalize("NFKC", value)
            client.get(f"/v1/records/{ds}/{rid}", params=query, headers={**base, header: value})
        elif kind == "search":
            body = {"value": insured.NID_X, "purpose": "benefit_review", "case_id": CASE}
            client.post(f"/v1/records/{ds}/search", json={**body, part: value}, headers=base)
        elif kind == "update":
            purpose = {"code": "bank_account_change", "case_id": CASE, part.replace("purpose", "code"): value}
            client.patch(f"/v1/records/{ds}/{rid}", json={"values": {"address": "x"}, "purpose": purpose},
                         headers=base)
        elif kind == "disclose":
            read = client.get(f"/v1/records/{ds}/{rid}", params=query, headers=base)
            source = (read.json().get("provenance") or {}).get("event_id") if read.status_code == 200 else None
            recipient = {"type": "agency", "id": "agency-tax"}
            purpose = {"code": "benefit_review", "legal_basis": "TCA-Art-30", "case_id": CASE}
            if part == "recipient":
                recipient["id"] = value
            elif part == "channel":
                recipient["channel"] = value
            else:
                purpose["code"] = value
            client.post("/v1/disclosures", headers=base, json={
                "dataset": ds, "record_id": rid, "fields": ["name"], "recipient": recipient, "purpose": purpose,
                "derived_from": [source or "00000000-0000-7000-8000-000000000000"]})
    elif area == "pdp":
        req = {"subject_token": officer, "device": {"id": "dev-pii-1"},
               "context": {"network_zone": "internal", "channel": "counter"},
               "resource": {"type": "record", "dataset": ds, "record_id": rid, "fields": ["name"]},
               "action": "read", "purpose": {"code": "benefit_review", "case_id": CASE}}
        if name == "device":
            req["device"]["id"] = value
        elif name == "channel":
            req["context"]["channel"] = value
        elif name in ("record_id", "dataset"):
            req["resource"][name] = value
        elif name == "purpose":
            req["purpose"]["code"] = value
        elif name == "recipient":
            req["action"] = "disclose"
            req["recipient"] = {"type": "agency", "id": value}
        elif name == "justification":
            req["purpose"]["justification"] = f"checking {value} at the counter"
        else:
            req["purpose"][name] = value
        client.post("/v1/decisions", json=req, headers={"Authorization": f"Bearer {pep}"})
    elif area == "ex":
        xo = rt.issuer.issue_subject("emp-xo", ["exchange_officer"], method="fido2", mfa=True, org_unit="x")
        headers = {**base, "Authorization": f"Bearer {xo}"}
        body = {"agreement_id": "DSA-PII-1", "citizens": [insured.NID_X]}
        if name == "receipt":
            import base64
            import json

            claims = base64.urlsafe_b64encode(json.dumps({"transfer_id": value}).encode()).decode().rstrip("=")
            agency = rt.issuer.issue_client("pii-agency", ["exchange:receipt"])
            client.post("/v1/exchange/receipts", json={"receipt": f"eyJhbGciOiJFZDI1NTE5In0.{claims}.c2ln"},
                        headers={"Authorization": f"Bearer {agency}"})
            return
        part = name.removeprefix("batch.")
        body[part] = [value, insured.NID_Y] if part in ("citizens", "fields") else value
        r = client.post("/v1/exchange/batches", json=body, headers=headers)
        if r.status_code == 202:  # wait for the job, so what it wrote is what the scan sees
            import time

            for _ in range(400):
                if client.get(r.headers["location"], headers=headers).json()["state"] not in ("queued", "running"):
                    break
                time.sleep(0.025)
    else:
        event = {"type": "pii.read", "actor": {"id": "staff-1"}, "via": {"channel": "api"}, "dataset": ds,
                 "record_id": rid, "fields": ["name"], "purpose": {"code": "benefit_review", "case_id": CASE}}
        if name == "record_id":
            event["record_id"] = value
        elif name == "case_id":
            event["purpose"]["case_id"] = value
        elif name == "actor":
            event["actor"]["id"] = value
        elif name == "channel":
            event["via"]["channel"] = value
        else:
            event.update(type="pii.disclose", derived_from=["00000000-0000-7000-8000-000000000001"],
                         recipient={"type": "agency", "id": "agency-tax", "name": f"tax office of {value}"},
                         purpose={"code": "benefit_review", "legal_basis": "TCA-Art-30"})
        client.post("/v1/provenance/events", json={"events": [event]}, headers={"Authorization": f"Bearer {pep}"})


def _forms(nid: str, written: str) -> set[bytes]:
    forms = {nid, nid.lower(), written, unicodedata.normalize("NFKC", written), _full_width(nid)}
    return {f.encode("utf-8") for f in forms} | {f.encode("utf-16-le") for f in (nid, written)}


def _at_rest(rt: Runtime) -> list[tuple[Path, bytes]]:
    rt.decision_log.flush()
    rt.history.close()  # writes the signal history behind; it reopens lazily on the next decision
    del rt.__dict__["history"]
    rt.point.history = rt.history
    engine = make_engine(rt.settings)  # the SIEM store, fed from the live stores
    try:
        engine.ingest(live_sources(rt.settings))
    finally:
        engine.conn.close()
    return [(p, p.read_bytes()) for p in sorted(rt.home.rglob("*")) if p.is_file()]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(ids=st.lists(national_ids(), min_size=len(FIELDS), max_size=len(FIELDS)))
def test_no_form_of_a_national_id_is_stored_in_any_field(world, ids: list[tuple[str, str]]) -> None:  # noqa: ANN001
    rt, client = world
    for field, (_, written) in zip(FIELDS, ids, strict=True):
        _send(rt, client, field, written)
    stored = _at_rest(rt)
    assert stored, "nothing was written at all"
    leaks = [(str(path.relative_to(rt.home)), field) for (field, (nid, written)), (path, data)
             in itertools.product(zip(FIELDS, ids, strict=True), stored)
             if any(form in data for form in _forms(nid, written))]
    assert leaks == []


def test_the_search_for_a_leak_would_find_one(world) -> None:  # noqa: ANN001
    """The check is only as good as its search: a raw ID written anywhere in the home is found."""
    rt, _ = world
    nid, written = insured.NID_Y, f"{insured.NID_Y[:4]}-{insured.NID_Y[4:7]}-{insured.NID_Y[7:]}"
    planted = rt.home / "planted.txt"
    planted.write_text(f"note: {written}")
    try:
        found = [p for p, data in _at_rest(rt) if any(f in data for f in _forms(nid, written))]
    finally:
        planted.unlink()
    assert found == [planted]
