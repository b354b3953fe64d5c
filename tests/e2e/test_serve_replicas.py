"""`ztcp serve` replicas as real processes on one PostgreSQL (ZTCP_DATABASE_URL): one scheduler leader
for the cluster, a standby that takes over within 10 s of the leader's kill -9, and the replicas
that must not join — another master key, other keys at home, no database — refused in one line."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

MASTER = base64.b64encode(os.urandom(32)).decode()


def _env(home: Path, port: int, url: str, master: str = MASTER) -> dict:
    home.mkdir(mode=0o700, exist_ok=True)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")},
            "ZTCP_HOME": str(home), "ZTCP_PORT": str(port), "ZTCP_DATABASE_URL": url, "ZTCP_MASTER_KEY": master,
            "ZTCP_ENGINE_TIMEOUT_MS": "2000", "ZTCP_CONFIG": str(home / "none.toml")}


def _serve(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning",
                             "--siem-interval", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _ready(port: int, proc: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"replica exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if r.status_code == 200:
                return r.json()["checks"]
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("not ready in time")


def _checks(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["checks"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_one_scheduler_for_two_replicas_and_a_standby_takes_over_after_kill_9(tmp_path, pg_dsn) -> None:  # noqa: ANN001
    ports = [_free_port(), _free_port()]
    procs = [_serve(_env(tmp_path / "a", ports[0], pg_dsn))]
    try:
        _ready(ports[0], procs[0])
        procs.append(_serve(_env(tmp_path / "b", ports[1], pg_dsn)))  # a home with nothing in it
        _ready(ports[1], procs[1])
        time.sleep(4)  # several ticks (1 s each)
        checks = [_checks(p) for p in ports]
        roles = [c["cluster"]["roles"]["scheduler"] for c in checks]
        assert sorted(roles) == ["leader", "standby"], checks
        assert all(c["cluster"]["database"].startswith("postgresql://") for c in checks)
        assert {c["cluster"]["roles"]["integrator"] for c in checks} == {"leader", "standby"}
        leader = roles.index("leader")
        standby = 1 - leader
        runs = [c["siem"]["runs"] for c in checks]
        assert runs[leader] >= 2 and runs[standby] == 0, runs  # each tick ran once, on the leader only
        # One set of keys: both publish the same JWKS (dev IdP + decision tokens).
        jwks = [httpx.get(f"http://127.0.0.1:{p}/.well-known/jwks.json").json() for p in ports]
        assert jwks[0] == jwks[1]

        procs[leader].kill()  # kill -9: no goodbye to the database
        procs[leader].communicate()
        killed = time.monotonic()
        while _checks(ports[standby])["cluster"]["roles"]["scheduler"] != "leader":
            assert time.monotonic() - killed < 10, "the standby did not take over within 10 s"
            time.sleep(0.1)
        took = time.monotonic() - killed
        before = _checks(ports[standby])["siem"]["runs"]
        time.sleep(2.5)
        after = _checks(ports[standby])
        assert after["siem"]["runs"] > before  # and it runs the ticks now
        print(f"\nscheduler lease: standby took over {took:.2f} s after the leader's kill -9")
    finally:
        for proc in procs:
            _stop(proc)


def _refused(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "serve"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_replicas_that_do_not_match_the_cluster_refuse_to_start_in_one_line(tmp_path, pg_dsn) -> None:  # noqa: ANN001
    port = _free_port()
    first = _serve(_env(tmp_path / "a", port, pg_dsn))
    try:
        _ready(port, first)
    finally:
        _stop(first)
    # The cluster's keyring now exists (sealed under MASTER). Another master key: refused, says which.
    other = base64.b64encode(os.urandom(32)).decode()
    run = _refused(_env(tmp_path / "b", _free_port(), pg_dsn, master=other))
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ztcp: error: "), run.stderr
    assert "master key" in lines[0] and "cluster" in lines[0] and "serving on" not in run.stdout
    assert other not in run.stderr + run.stdout and MASTER not in run.stderr + run.stdout

    # The right master key, but this home has keys of its own (another installation's): refused, names them.
    home = tmp_path / "c"
    home.mkdir(mode=0o700)
    from keymgmt import LocalKeyring

    LocalKeyring.open(home / "keyring.sealed", base64.b64decode(MASTER)).ensure("decision-signing", "ed25519")
    run = _refused(_env(home, _free_port(), pg_dsn))
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "decision-signing" in lines[0] and "differ from the cluster" in lines[0], run.stderr


def test_an_unreachable_database_at_start_is_one_line_without_the_password(tmp_path) -> None:  # noqa: ANN001
    port = _free_port()  # nothing listens there
    url = f"postgresql://ztcp:hunter2-secret@127.0.0.1:{port}/ztcp"
    run = _refused(_env(tmp_path / "a", _free_port(), url))
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"ztcp: error: cannot reach the database postgresql://ztcp@127.0.0.1:{port}/ztcp")
    assert "hunter2" not in run.stderr + run.stdout and "serving on" not in run.stdout


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("ZTCP_")]:
        monkeypatch.delenv(key)
