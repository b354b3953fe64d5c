"""`ztcp serve --workers N` (server/workers.py): N processes on one port and one PostgreSQL, a worker
killed with -9 replaced while the others keep answering, SIGTERM stopping all of them cleanly, and
N > 1 on SQLite refused in one line naming ZTCP_DATABASE_URL."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

MASTER = base64.b64encode(os.urandom(32)).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, port: int, url: str | None) -> dict:
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")},
           "ZTCP_HOME": str(home), "ZTCP_PORT": str(port), "ZTCP_MASTER_KEY": MASTER,
           "ZTCP_CONFIG": str(home / "none.toml")}
    if url:
        env["ZTCP_DATABASE_URL"] = url
    return env


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def _pids_answering(port: int, want: int, timeout: float = 60) -> set[int]:
    """Worker pids seen on /readyz (fresh connections, so the kernel hands them to any worker)."""
    seen: set[int] = set()
    deadline = time.time() + timeout
    while len(seen) < want and time.time() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            if r.status_code == 200:
                seen.add(r.json()["checks"]["cluster"]["pid"])
        except httpx.HTTPError:
            time.sleep(0.2)
    return seen


def test_two_workers_share_the_port_a_killed_one_is_replaced_and_sigterm_stops_all(tmp_path, pg_dsn) -> None:  # noqa: ANN001
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--log-level", "warning"],
                            env=_env(tmp_path / "home", port, pg_dsn), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = _pids_answering(port, 2)
        workers = _children(proc.pid)
        assert len(workers) == 2 and first == workers, (first, workers)

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 60
        while True:  # the other worker answers all along; a new one joins
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert r.status_code == 200
            now = _children(proc.pid)
            if len(now) == 2 and victim not in now:
                break
            assert time.time() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        replaced = now - workers
        assert len(replaced) == 1
        assert _pids_answering(port, 2) == now  # and the new one serves

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        assert out.count("ztcp serving on") == 1 and "2 workers" in out
        for pid in now:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_workers_end_when_their_supervisor_is_killed_9(tmp_path, pg_dsn) -> None:  # noqa: ANN001
    """No orphan keeps the port: the workers follow a supervisor killed with -9 (they drain and flush
    as on SIGTERM), and a new `ztcp serve` can bind the port again."""
    port = _free_port()
    env = _env(tmp_path / "home", port, pg_dsn)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    again = None
    try:
        assert len(_pids_answering(port, 2)) == 2
        workers = _children(proc.pid)
        proc.kill()
        proc.communicate()
        deadline = time.time() + 40
        while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
                  for pid in workers):
            assert time.time() < deadline, "workers outlived their supervisor"
            time.sleep(0.1)
        again = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert _pids_answering(port, 1), "the port was not free again"
    finally:
        for p in (proc, again):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=60)


def test_more_than_one_worker_on_sqlite_is_refused_naming_the_setting(tmp_path) -> None:  # noqa: ANN001
    run = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--workers", "2"],
                         env=_env(tmp_path / "home", _free_port(), None), capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 1, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ztcp: error: ") and "ZTCP_DATABASE_URL" in lines[0], run.stderr
    assert "serving on" not in run.stdout


def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_code(tmp_path, pg_dsn) -> None:  # noqa: ANN001
    """The cluster's keyring is sealed under another master key: every worker would fail the same
    way, so the supervisor does not restart them forever; it exits with their code (2, refused)."""
    port = _free_port()
    first = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"],
                             env=_env(tmp_path / "a", port, pg_dsn), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert _pids_answering(port, 1)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    env = _env(tmp_path / "b", _free_port(), pg_dsn) | {"ZTCP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    run = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--workers", "2"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("ztcp: error: ")]
    assert errors and all("master key" in line for line in errors), run.stderr


def test_workers_must_be_a_positive_number(tmp_path) -> None:  # noqa: ANN001
    run = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--workers", "0"],
                         env=_env(tmp_path / "home", _free_port(), None), capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 1 and "--workers" in run.stderr


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("ZTCP_")]:
        monkeypatch.delenv(key)
