"""deploy/postgres on loopback: a primary and a hot standby built by the scripts as an operator would
run them, synchronous streaming replication (a commit returns once the standby has it), reads on the
standby, writes refused there, and the standby promoted after the primary is lost (RPO 0)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "postgres"
_spec = importlib.util.spec_from_file_location("ztcp_test_postgres_deploy", ROOT / "tests" / "helpers" / "postgres.py")
pg_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules[_spec.name] = pg_helpers  # type: ignore[union-attr]
_spec.loader.exec_module(pg_helpers)  # type: ignore[union-attr]


def _as_postgres(env: dict[str, str], *cmd: str) -> subprocess.CompletedProcess:
    """Run as the postgres OS user (we may be root), with ``env`` on top of a clean PATH."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", **env}
    if os.geteuid() == 0:
        pairs = [f"{k}={v}" for k, v in full.items()]
        cmd = ("runuser", "-u", "postgres", "--", "env", "-i", *pairs, *cmd)  # type: ignore[assignment]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, env=full)


class Server:
    def __init__(self, base: Path, name: str, bindir: Path) -> None:
        self.base, self.name, self.bindir = base, name, bindir
        self.data = base / name
        self.port = pg_helpers.free_port()

    @property
    def env(self) -> dict[str, str]:
        return {"PGDATA": str(self.data), "PGHOST": str(self.base), "PGPORT": str(self.port), "PGUSER": "postgres",
                "PGBIN": str(self.bindir)}

    def start(self) -> None:
        r = _as_postgres(self.env, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                         str(self.base / f"{self.name}.log"), "-w", "-t", "60", "-o",
                         f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1", "start")
        assert r.returncode == 0, r.stderr + (self.base / f"{self.name}.log").read_text()[-2000:]

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(self.env, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host=str(self.base), port=self.port, user="postgres", dbname="postgres",
                               autocommit=True)


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ztcp-deploy-pg-"))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    try:
        yield path
    finally:
        for data in ("primary", "standby"):
            if (path / data / "postmaster.pid").exists():
                _as_postgres({}, str(pg_helpers.pg_bin() / "pg_ctl"), "-D", str(path / data), "-m", "immediate",
                             "-w", "stop")
        shutil.rmtree(path, ignore_errors=True)


def test_primary_and_synchronous_hot_standby_then_promotion(base: Path) -> None:
    bindir = pg_helpers.pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (make system)")
    secret = base / "replicator.secret"
    secret.write_text(os.urandom(12).hex())
    secret.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(secret, "postgres", "postgres")

    primary, standby = Server(base, "primary", bindir), Server(base, "standby", bindir)
    # Passwords on TCP (the replication connection must prove itself); the test's own sessions use the socket.
    r = _as_postgres(primary.env, str(bindir / "initdb"), "-D", str(primary.data), "-U", "postgres", "-E", "UTF8",
                     "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
    assert r.returncode == 0, r.stderr
    setup = {**primary.env, "STANDBY_NAMES": "ztcp_dc2", "REPLICATION_CIDR": "127.0.0.1/32",
             "REPLICATION_PASSWORD_FILE": str(secret)}
    r = _as_postgres(setup, "bash", str(DEPLOY / "primary-setup.sh"))
    assert r.returncode == 0 and "start the server" in r.stdout, r.stdout + r.stderr
    primary.start()
    r = _as_postgres(setup, "bash", str(DEPLOY / "primary-setup.sh"))
    assert r.returncode == 0 and "replication role replicator ready" in r.stdout, r.stdout + r.stderr
    assert _as_postgres(setup, "bash", str(DEPLOY / "primary-setup.sh")).returncode == 0  # idempotent

    # A wrong password is refused (the hba line is SCRAM, not trust).
    wrong = base / "wrong.secret"
    wrong.write_text("not-the-password")
    if os.geteuid() == 0:
        shutil.chown(wrong, "postgres", "postgres")
    r = _as_postgres({**standby.env, "PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": str(primary.port),
                      "STANDBY_NAME": "ztcp_dc2", "REPLICATION_PASSWORD_FILE": str(wrong),
                      "PASSFILE": str(base / "wrong.pgpass")}, "bash", str(DEPLOY / "standby-setup.sh"))
    assert r.returncode != 0 and "password authentication failed" in r.stderr, r.stderr
    shutil.rmtree(standby.data, ignore_errors=True)

    r = _as_postgres({**standby.env, "PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": str(primary.port),
                      "STANDBY_NAME": "ztcp_dc2", "REPLICATION_PASSWORD_FILE": str(secret)},
                     "bash", str(DEPLOY / "standby-setup.sh"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert secret.read_text() not in r.stdout + r.stderr
    standby.start()

    with primary.connect() as p:
        deadline = time.monotonic() + 30
        # ANY 1 (ztcp_dc2): a quorum of one standby; its state reads "quorum" (FIRST n would say "sync").
        while p.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'ztcp_dc2'"
                        ).fetchone() != ("quorum",):
            assert time.monotonic() < deadline, (p.execute("SELECT * FROM pg_stat_replication").fetchall(),
                                                 (base / "standby.log").read_text()[-3000:])
            time.sleep(0.2)
        p.execute("CREATE TABLE ledger_probe (seq bigint PRIMARY KEY, note text)")
        p.execute("INSERT INTO ledger_probe SELECT g, 'acknowledged' FROM generate_series(0, 999) g")

    with standby.connect() as s:
        assert s.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        deadline = time.monotonic() + 10
        while True:  # flushed there at commit; applied (visible to readers) moments later
            try:
                if s.execute("SELECT count(*) FROM ledger_probe").fetchone() == (1000,):
                    break
            except psycopg.errors.UndefinedTable:
                pass
            assert time.monotonic() < deadline, "the write never reached the standby"
            time.sleep(0.05)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            s.execute("INSERT INTO ledger_probe VALUES (1000, 'on the standby')")

    # Synchronous: with the standby down, a commit on the primary waits (it is not acknowledged) until
    # the standby is back and has it.
    standby.stop("fast")
    done = threading.Event()

    def commit() -> None:
        with primary.connect() as p:
            p.execute("INSERT INTO ledger_probe VALUES (1000, 'waits for the standby')")
        done.set()

    writer = threading.Thread(target=commit, daemon=True)
    writer.start()
    assert not done.wait(2.0), "a commit returned without a synchronous standby"
    standby.start()
    assert done.wait(30), "the commit did not complete once the standby was back"
    writer.join()

    # The primary's data centre is lost (a crash, no goodbye); a person promotes the standby.
    primary.stop("immediate")
    r = _as_postgres(standby.env, "bash", str(DEPLOY / "promote.sh"))
    assert r.returncode == 0 and "this server is the primary now" in r.stdout, r.stdout + r.stderr
    print("\n" + r.stdout.strip().splitlines()[-1])
    with standby.connect() as s:
        assert s.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert s.execute("SELECT count(*), max(seq) FROM ledger_probe").fetchone() == (1001, 1000)  # RPO 0
        s.execute("INSERT INTO ledger_probe VALUES (1001, 'after the promotion')")  # writable now


def test_the_standby_script_refuses_a_data_directory_that_is_not_empty(base: Path) -> None:
    if pg_helpers.pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (make system)")
    data = base / "standby"
    data.mkdir()
    (data / "PG_VERSION").write_text("16\n")
    secret = base / "s"
    secret.write_text("x")
    if os.geteuid() == 0:
        for p in (data, data / "PG_VERSION", secret):
            shutil.chown(p, "postgres", "postgres")
    r = _as_postgres({"PGDATA": str(data), "PRIMARY_HOST": "127.0.0.1", "REPLICATION_PASSWORD_FILE": str(secret)},
                     "bash", str(DEPLOY / "standby-setup.sh"))
    assert r.returncode == 1 and "not empty" in r.stderr
    assert (data / "PG_VERSION").read_text() == "16\n"
