"""What the gateway believes about a request's device and context (issue #13, findings 1 and 6).

The attacker's view first: an end user who adds the headers a trusted proxy would set, or a made-up
device id, or a forged or stolen device credential, gets nothing for it. Then the trusted paths:
the proxy's X-Forwarded-For chain, network zones and sites from configured ranges, device
certificates from the bureau's device CA, signed posture assertions, and the inventory.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OKPKey
from starlette.requests import Request

import contracts
from gateway.context import ContextResolver, load_sites
from pdp.devices import POSTURE_TYP, DeviceAuthenticator, DeviceCA, DeviceError, DeviceInventory, PostureVerifier
from pdp.identity import JwtVerifier, StaticKeySource
from pdp.problems import Problem
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

PROXY = "192.0.2.10"
ATTACKER = "203.0.113.50"
CASE = "C-TC-0001"
FORGED = {"X-Device-Id": "dev-gw-1", "X-Device-Managed": "true", "X-Device-Compliant": "true",
          "X-Network-Zone": "internal", "X-Geo": "25.04,121.56", "X-Channel": "counter",
          "X-Forwarded-For": "10.1.2.3"}
MDM_ISSUER = "https://mdm.bureau.example"


def _request(peer: str, headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "client": (peer, 1234),
                    "query_string": b""})


# -- end to end: the attacker's headers change nothing ---------------------------------------------
@pytest.fixture
def rt(ztcp_home: Path):
    runtime = Runtime(load_settings(engine_timeout_ms=2000, trusted_proxies=[PROXY]))
    runtime.keys.ensure_all()
    runtime.device_inventory.register("dev-gw-1", managed=True, compliant=True, actor="test")
    insured.write_bureau(ztcp_home, CASE, contracts.citizen_ref(insured.NID_X, runtime.keys.blind_index),
                         ["emp-officer"], runtime)
    insured.create_encrypted_table(runtime, insured.PEOPLE)
    yield runtime
    runtime.close()


def _read(client: TestClient, rt: Runtime, headers: dict[str, str]):  # noqa: ANN202
    token = rt.issuer.issue_subject("emp-officer", ["case_officer"], method="fido2", mfa=True, org_unit="taipei-01")
    return client.get(f"/v1/records/{insured.DATASET}/1",
                      params={"fields": "name", "purpose": "benefit_review", "case_id": CASE},
                      headers={"Authorization": f"Bearer {token}", **headers})


def _last_input(rt: Runtime) -> dict:
    rt.decision_log.flush()
    (entry,) = rt.decision_log.entries(last=1)
    return entry


def test_an_end_user_adding_the_proxy_headers_gains_nothing(rt: Runtime) -> None:
    app = create_app(rt)
    with TestClient(app, client=(ATTACKER, 4444)) as attacker:
        plain = _read(attacker, rt, {})
        plain_entry = _last_input(rt)
        forged = _read(attacker, rt, FORGED)
        forged_entry = _last_input(rt)
    # The same answer and the same inputs as without the forged headers: unknown device from the
    # internet, location unknown, the connection's own address.
    assert forged.status_code == plain.status_code != 200
    for entry in (plain_entry, forged_entry):
        assert entry["input"]["device"] == {"id": "unknown", "managed": False, "compliant": False,
                                            "posture": {"baseline_ok": None, "edr_running": None,
                                                        "disk_encrypted": None, "patch_age_days": None}}
        ctx = entry["input"]["context"]
        assert ctx["ip"] == ATTACKER and ctx["network_zone"] == "internet" and ctx["geo"] is None
        assert ctx["channel"] == "gateway"
    assert forged_entry["result"]["risk"] == plain_entry["result"]["risk"]
    # The same request through the bureau's proxy, for the enrolled workstation, is permitted.
    with TestClient(app, client=(PROXY, 4444)) as proxy:
        assert _read(proxy, rt, {k: v for k, v in FORGED.items() if not k.startswith("X-Device-M")
                                 and k != "X-Device-Compliant"}).status_code == 200


def test_a_missing_location_is_a_risk_factor_not_a_skipped_check(rt: Runtime) -> None:
    with TestClient(create_app(rt), client=(PROXY, 4444)) as proxy:
        _read(proxy, rt, {"X-Device-Id": "dev-gw-1", "X-Network-Zone": "vpn"})  # no X-Geo, no site
    entry = _last_input(rt)
    assert entry["input"]["signals"]["location_unknown"] is True
    assert "location_unknown" in [f["name"] for f in entry["result"]["risk"]["factors"]]


def test_a_denied_request_does_not_make_its_device_known(rt: Runtime) -> None:
    # Finding 6: the retry from a new device must still be "first seen" after a refusal.
    headers = {"X-Device-Id": "dev-stolen-9", "X-Network-Zone": "internet", "X-Geo": "25.04,121.56"}
    with TestClient(create_app(rt), client=(PROXY, 4444)) as proxy:
        first = _read(proxy, rt, headers)
        assert first.status_code != 200
        assert _last_input(rt)["input"]["signals"]["device_first_seen"] is True
        _read(proxy, rt, headers)
        assert _last_input(rt)["input"]["signals"]["device_first_seen"] is True


# -- the resolver: proxies, zones, sites -----------------------------------------------------------
def test_forwarded_for_is_read_only_from_trusted_proxies_right_to_left() -> None:
    resolver = ContextResolver(trusted_proxies=["192.0.2.0/28", "198.51.100.7"])
    chain = {"X-Forwarded-For": "1.2.3.4, 10.9.8.7, 198.51.100.7"}
    assert str(resolver.client_address(_request("192.0.2.3", chain))) == "10.9.8.7"  # the spoofed 1.2.3.4 ignored
    assert str(resolver.client_address(_request(ATTACKER, chain))) == ATTACKER
    assert str(resolver.client_address(_request("192.0.2.3", {"X-Forwarded-For": "junk, 10.9.8.7"}))) == "10.9.8.7"
    assert str(resolver.client_address(_request("192.0.2.3", {"X-Forwarded-For": "10.0.0.1, junk"}))) == "192.0.2.3"
    assert str(resolver.client_address(_request("192.0.2.3"))) == "192.0.2.3"


def test_zone_and_site_come_from_configured_ranges(tmp_path: Path) -> None:
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps([{"name": "taipei-hq", "lat": 25.04, "lon": 121.56, "networks": ["10.1.0.0/16"]},
                                 {"name": "kaohsiung", "lat": 22.63, "lon": 120.30, "networks": ["10.7.0.0/16"]}]))
    resolver = ContextResolver(zones={"internal": ["10.0.0.0/8"], "vpn": ["10.200.0.0/16"]},
                               sites=load_sites(sites))
    device, ctx = resolver.resolve(_request("10.7.3.4"))
    assert ctx.network_zone == "internal" and ctx.geo is not None and (ctx.geo.lat, ctx.geo.lon) == (22.63, 120.30)
    assert device.id == "unknown" and not device.managed
    _, ctx = resolver.resolve(_request("10.200.1.1"))
    assert ctx.network_zone == "vpn" and ctx.geo is None  # the most specific range wins; no site there
    _, ctx = resolver.resolve(_request("8.8.8.8", {"X-Network-Zone": "internal", "X-Geo": "25,121"}))
    assert ctx.network_zone == "internet" and ctx.geo is None


def test_bad_configuration_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ZTCP_TRUSTED_PROXIES"):
        ContextResolver(trusted_proxies=["proxy.bureau"])
    with pytest.raises(ValueError, match="unknown zone"):
        ContextResolver(zones={"dmz": ["10.0.0.0/8"]})
    bad = tmp_path / "sites.json"
    bad.write_text(json.dumps([{"name": "x", "lat": 95, "lon": 0, "networks": []}]))
    with pytest.raises(ValueError, match="entry 0"):
        load_sites(bad)


# -- device certificates ---------------------------------------------------------------------------
def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return key, cert


def _device_cert(ca: tuple, device_id: str, *, days: int = 30) -> str:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=2)).not_valid_after(now + dt.timedelta(days=days))
            .sign(ca_key, hashes.SHA256()))
    return quote(cert.public_bytes(serialization.Encoding.PEM).decode())  # as HAProxy/nginx pass it on


def test_a_device_certificate_names_the_device_only_from_the_proxy_and_only_from_our_ca(tmp_path: Path) -> None:
    ours, theirs = _ca("Bureau Device CA"), _ca("Bureau Device CA")  # same name, another key
    inventory = DeviceInventory(tmp_path / "devices.db")
    inventory.register("dev-cert-1", managed=True, compliant=True, actor="test")
    resolver = ContextResolver(trusted_proxies=[PROXY], devices=DeviceAuthenticator(
        ca=DeviceCA(ours[1].public_bytes(serialization.Encoding.PEM)), inventory=inventory))
    device, _ = resolver.resolve(_request(PROXY, {"X-Client-Cert": _device_cert(ours, "dev-cert-1")}))
    assert device.id == "dev-cert-1" and device.managed and device.compliant  # posture from the inventory
    device, _ = resolver.resolve(_request(ATTACKER, {"X-Client-Cert": _device_cert(ours, "dev-cert-1")}))
    assert device.id == "unknown"  # a certificate header from the end user is not a verified certificate
    for bad, reason in ((_device_cert(theirs, "dev-cert-1"), "untrusted_certificate"),
                        (_device_cert(ours, "dev-cert-1", days=-1), "certificate_expired"),
                        ("not a certificate", "bad_certificate")):
        with pytest.raises(Problem) as exc:
            resolver.resolve(_request(PROXY, {"X-Client-Cert": bad}))
        assert exc.value.status == 401 and exc.value.extra["reasons"] == [f"device_{reason}"]
    with pytest.raises(Problem):  # the proxy's X-Device-Id must agree with the certificate
        resolver.resolve(_request(PROXY, {"X-Client-Cert": _device_cert(ours, "dev-cert-1"),
                                          "X-Device-Id": "dev-other"}))
    inventory.revoke("dev-cert-1", actor="test")
    device, _ = resolver.resolve(_request(PROXY, {"X-Client-Cert": _device_cert(ours, "dev-cert-1")}))
    assert device.id == "dev-cert-1" and not device.managed  # revoked: a known identity, no posture


# -- signed posture assertions ---------------------------------------------------------------------
def _mdm(kid: str = "mdm-1") -> tuple[OKPKey, dict]:
    key = OKPKey.import_key(Ed25519PrivateKey.generate())
    public = {**key.as_dict(private=False), "kid": kid, "use": "sig"}
    return key, public


def _assertion(key: OKPKey, kid: str, device: str, *, iat: float | None = None, exp_in: int = 300,
               typ: str = POSTURE_TYP, **extra: object) -> str:
    now = time.time() if iat is None else iat
    claims = {"iss": MDM_ISSUER, "aud": "ztcp", "sub": device, "iat": int(now), "exp": int(now) + exp_in,
              "managed": True, "compliant": True,
              "posture": {"baseline_ok": True, "edr_running": True, "disk_encrypted": True, "patch_age_days": 3},
              **extra}
    return jwt.encode({"alg": "Ed25519", "kid": kid, "typ": typ}, claims, key, algorithms=["Ed25519"])


def test_posture_comes_from_a_signed_fresh_assertion_for_this_device() -> None:
    key, public = _mdm()
    other_key, _ = _mdm()
    verifier = PostureVerifier(JwtVerifier(StaticKeySource({"keys": [public]}), MDM_ISSUER, "ztcp"),
                               max_age_seconds=600)
    resolver = ContextResolver(trusted_proxies=[PROXY], devices=DeviceAuthenticator(posture=verifier))
    device, _ = resolver.resolve(_request(ATTACKER, {"X-Device-Posture": _assertion(key, "mdm-1", "dev-lap-7")}))
    assert device.id == "dev-lap-7" and device.managed and device.posture.patch_age_days == 3
    refused = {
        "bad_signature": _assertion(other_key, "mdm-1", "dev-lap-7"),
        "expired": _assertion(key, "mdm-1", "dev-lap-7", iat=time.time() - 4000, exp_in=60),
        "stale": _assertion(key, "mdm-1", "dev-lap-7", iat=time.time() - 900, exp_in=3600),
        "wrong_token_type": _assertion(key, "mdm-1", "dev-lap-7", typ="JWT"),
        "unknown_kid": _assertion(key, "mdm-9", "dev-lap-7"),
    }
    for reason, token in refused.items():
        with pytest.raises(Problem) as exc:
            resolver.resolve(_request(ATTACKER, {"X-Device-Posture": token}))
        assert exc.value.extra["reasons"] == [f"device_{reason}"], reason
    # Another device's assertion, replayed where the proxy vouches for this device: refused.
    with pytest.raises(Problem) as exc:
        resolver.resolve(_request(PROXY, {"X-Device-Id": "dev-lap-8",
                                          "X-Device-Posture": _assertion(key, "mdm-1", "dev-lap-7")}))
    assert exc.value.extra["reasons"] == ["device_wrong_device"]


# -- the inventory ---------------------------------------------------------------------------------
def test_inventory_csv_import_is_all_or_nothing(tmp_path: Path) -> None:
    inventory = DeviceInventory(tmp_path / "devices.db")
    good = tmp_path / "good.csv"
    good.write_text("device_id,managed,compliant,edr_running,patch_age_days\n"
                    "dev-a,true,true,true,4\ndev-b,true,false,,\n")
    assert inventory.import_csv(good, actor="admin") == 2
    assert inventory.get("dev-a").posture.patch_age_days == 4 and not inventory.get("dev-b").compliant
    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,managed,compliant\ndev-c,true,true\ndev-d,perhaps,true\n")
    with pytest.raises(DeviceError, match="line 3"):
        inventory.import_csv(bad, actor="admin")
    assert inventory.get("dev-c") is None
    assert (tmp_path / "devices.db").stat().st_mode & 0o777 == 0o600
