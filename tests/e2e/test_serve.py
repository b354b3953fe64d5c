"""`ztcp serve` as a real process: first start bootstraps, serves decisions, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from pdp.decision_log import DecisionLogReader


def _ztcp(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def _siem_has_decisions(home) -> bool:
    import sqlite3

    path = home / "siem.db"
    if not path.exists():
        return False
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = "ev_decision" if "ev_decision" in tables else None
        return bool(table) and conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # noqa: S608
    finally:
        conn.close()


def test_serve_bootstraps_answers_and_drains_on_sigterm(ztcp_home, unused_tcp_port):
    env = {**os.environ, "ZTCP_HOME": str(ztcp_home), "ZTCP_PORT": str(unused_tcp_port),
           "ZTCP_ENGINE_TIMEOUT_MS": "2000"}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning",
                               "--siem-interval", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        deadline = time.time() + 60
        ready = None
        while time.time() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, ready and ready.text
        assert ready.json()["checks"]["policy"]["revision"] == "r1"
        assert httpx.post(f"{base}/v1/decisions", json={}).status_code == 401
        caller = _ztcp(env, "token", "issue", "--client", "counter-app", "--scope", "pdp:decide")
        subject = _ztcp(env, "token", "issue", "--sub", "emp-0042", "--role", "case_officer", "--method", "fido2",
                        "--mfa")
        body = {"subject_token": subject, "device": {"id": "d1", "managed": True, "compliant": True},
                "context": {"network_zone": "internal"},
                "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                             "citizen_ref": "cr_SAMPLE" + "A" * 45 + "B", "fields": ["name"]},
                "action": "read", "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"}}
        for _ in range(20):
            r = httpx.post(f"{base}/v1/decisions", json=body, headers={"Authorization": f"Bearer {caller}"})
            assert r.status_code == 200 and r.json()["effect"] in ("permit", "step_up")
        jwks = httpx.get(f"{base}/.well-known/jwks.json").json()
        assert len(jwks["keys"]) >= 2  # dev IdP + decision-signing
        deadline = time.time() + 20  # the SIEM scheduler picks the decisions up from the live log
        while time.time() < deadline and not _siem_has_decisions(ztcp_home):
            time.sleep(0.5)
        assert _siem_has_decisions(ztcp_home)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err[-2000:]
    assert "logs flushed" in out
    assert "ztcp serving on" in out and "curl" in out  # first-start guidance
    assert DecisionLogReader(ztcp_home / "decisions.db").count() == 20


def test_a_busy_port_is_one_line_and_exit_1_before_serving_is_announced(ztcp_home, unused_tcp_port):
    """`make run` twice: the second must say the port is taken, not print "serving on" and die later."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", unused_tcp_port))
    taken.listen()
    try:
        env = {**os.environ, "ZTCP_HOME": str(ztcp_home)}
        run = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--port", str(unused_tcp_port)], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    finally:
        taken.close()
    assert run.returncode == 1, run.stderr[-2000:]
    assert "serving on" not in run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("ztcp: error: cannot listen on ") and f"127.0.0.1:{unused_tcp_port}" in lines[0]
    assert "already in use" in lines[0]
