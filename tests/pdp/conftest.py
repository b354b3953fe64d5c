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


# -- PostgreSQL: a throwaway cluster (Debian's server), as tests/keymgmt/conftest.py starts one. ------
# Copied here, minimal, until the shared test module lands; postgres refuses to run as root, so the
# cluster is created and run as the ``postgres`` OS user in a temp dir owned by that user.

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*args: str) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@dataclass
class PgServer:
    """One PostgreSQL cluster on 127.0.0.1 (trust authentication: a throwaway for tests)."""

    base: Path
    port: int

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        r = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l",
                         str(self.base / "pg.log"), "-w", "-t", "60", "start")
        if r.returncode != 0:
            log = (self.base / "pg.log").read_text()[-1000:] if (self.base / "pg.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr[-1000:]} {log}")

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def create_database(self) -> str:
        import psycopg

        name = "db_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_pg_server() -> PgServer:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL binaries not found in {PG_BIN}: run `make test` (installs postgresql)")
    base = Path(tempfile.mkdtemp(prefix="ztcp-pdp-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    r = _as_postgres(str(PG_BIN / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres",
                     "--no-sync", "-E", "UTF8")
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {r.stderr[-2000:]}")
    server = PgServer(base, _free_port())
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_pg_server()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database in the session's cluster."""
    return pg_server.create_database()


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A cluster of this test's own, which it may stop and start (an outage)."""
    server = start_pg_server()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.base, ignore_errors=True)
