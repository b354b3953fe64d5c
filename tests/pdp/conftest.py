"""Fixtures for the decision point: a real dev issuer, real keys, the real default pack on regorus."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.calendar import BusinessCalendar
from pdp.decision_log import DecisionLog
from pdp.engine import create_engine
from pdp.identity import JwtVerifier, StaticKeySource
from pdp.issuer import DevIssuer
from pdp.point import ActivePolicy, DecisionPoint
from pdp.signals import SignalHistory
from pdp.tokens import DecisionTokenSigner
from policy import load_pack

ISSUER = "https://idp.test"
AUDIENCE = "ztcp"
CITIZEN = "cr_SAMPLEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"
# 2026-11-23 is a Monday. 10:00 and 02:00 Taipei (UTC+8).
MONDAY_10 = 1795399200.0  # 2026-11-23T02:00:00Z
MONDAY_02 = MONDAY_10 - 8 * 3600


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> DevIssuer:
    return DevIssuer(Ed25519PrivateKey.generate(), ISSUER, AUDIENCE)


@pytest.fixture
def verifier(issuer: DevIssuer) -> JwtVerifier:
    return JwtVerifier(StaticKeySource(issuer.jwks), ISSUER, AUDIENCE, leeway_seconds=30)


@pytest.fixture
def signer() -> DecisionTokenSigner:
    return DecisionTokenSigner(Ed25519PrivateKey.generate(), issuer="https://pdp.test", ttl_seconds=60)


@pytest.fixture(scope="session")
def pack():
    return load_pack()


def make_active(pack, revision: str = "r-test") -> ActivePolicy:
    calendar = BusinessCalendar.from_config(pack.data.get("ztcp", {}).get("config", {}).get("calendar"))
    return ActivePolicy(engine=create_engine(pack, "regorus", revision=revision), calendar=calendar)


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10)


@pytest.fixture
def point(tmp_path: Path, verifier, signer, pack, clock):
    log = DecisionLog(tmp_path / "decisions.db")
    history = SignalHistory(tmp_path / "signals.db")
    p = DecisionPoint(verifier=verifier, signer=signer, log=log, history=history,
                      active=make_active(pack), timeout_ms=200, clock=clock)
    yield p
    p.close()
    log.close()
    history.close()


@pytest.fixture
def officer_token(issuer: DevIssuer, clock: Clock):
    def make(**kw) -> str:
        args = {"method": "fido2", "mfa": True, "org_unit": "taipei-03", "now": clock.now}
        args.update(kw)
        roles = args.pop("roles", ["case_officer"])
        sub = args.pop("sub", "emp-0042")
        return issuer.issue_subject(sub, roles, **args)

    return make


@pytest.fixture
def make_request():
    return request_doc


def request_doc(token: str, **overrides) -> dict:
    doc = {
        "subject_token": token,
        "device": {"id": "dev-1", "managed": True, "compliant": True,
                   "posture": {"baseline_ok": True, "edr_running": True, "disk_encrypted": True,
                               "patch_age_days": 5}},
        "context": {"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter",
                    "geo": {"lat": 25.03, "lon": 121.56, "country": "TW"}},
        "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                     "citizen_ref": CITIZEN, "fields": ["name", "address", "bank_account"],
                     "classification": "personal"},
        "action": "read",
        "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc
