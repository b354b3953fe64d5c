"""The issue's "Done when": `ztcp serve` runs, `ztcp demo seed` seeds the same home meanwhile; the
server then shows the new events, the ledger verifies and the alerts are listed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.serving import wait_ready, ztcp  # noqa: E402


def test_seed_while_the_server_runs(ztcp_home, unused_tcp_port) -> None:
    env = {**os.environ, "ZTCP_HOME": str(ztcp_home), "ZTCP_PORT": str(unused_tcp_port),
           "ZTCP_ENGINE_TIMEOUT_MS": "2000"}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning",
                               "--siem-interval", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        wait_ready(base, server)

        seeded = ztcp(env, "demo", "seed", "--citizens", "300", "--days", "2", "--json", timeout=600)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        report = json.loads(seeded.stdout)
        assert report["missed"] == [] and report["reads_equal_events"] and report["reads"] > 0

        # The running server answers from the ledger the seeding process appended to.
        vips = json.loads((ztcp_home / "bureau-data.json").read_text())["protected_citizens"]
        reader = ztcp(env, "token", "issue", "--client", "audit-console", "--scope", "provenance:read")
        assert reader.returncode == 0, reader.stderr
        snooper = next(i["actor"] for i in report["incidents"] if i["name"] == "vip_snooping")
        snooped = []
        for vip in vips:  # one of the well-known people was snooped on: the server shows that read
            r = httpx.get(f"{base}/v1/provenance/citizens/{vip}/events",
                          headers={"Authorization": f"Bearer {reader.stdout.strip()}"}, timeout=30)
            assert r.status_code == 200, r.text
            snooped += [e for e in r.json()["events"]
                        if e["event"]["type"] == "pii.read" and e["event"]["actor"]["id"] == snooper]
        assert snooped

        assert httpx.get(f"{base}/readyz", timeout=5).json()["status"] == "ready"
        # The server reloaded the seeded bureau data: an officer's own open case is permitted there.
        staff = {s["id"]: s for s in json.loads((ztcp_home / "directory.json").read_text())["staff"]}
        cases = json.loads((ztcp_home / "bureau-data.json").read_text())["cases"]
        case_id, case = next((cid, c) for cid, c in cases.items() if c["status"] == "open"
                             and staff[c["assignees"][0]]["roles"] == ["case_officer"])
        officer = staff[case["assignees"][0]]
        subject = ztcp(env, "token", "issue", "--sub", officer["id"], "--role", "case_officer", "--method",
                        "fido2", "--mfa").stdout.strip()
        caller = ztcp(env, "token", "issue", "--client", "counter-app", "--scope", "pdp:decide").stdout.strip()
        body = {"subject_token": subject, "device": {"id": officer["device"]["id"], "managed": True,
                                                     "compliant": True},
                "context": {"network_zone": "internal"},
                "resource": {"type": "record", "dataset": "insured_persons", "record_id": "1",
                             "citizen_ref": case["citizen_ref"], "fields": ["name"]},
                "action": "read", "purpose": {"code": case["purposes"][0], "case_id": case_id}}
        decided = httpx.post(f"{base}/v1/decisions", json=body, headers={"Authorization": f"Bearer {caller}"})
        assert decided.status_code == 200 and decided.json()["effect"] == "permit", decided.text

        verify = ztcp(env, "audit", "verify", timeout=300)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        alerts = ztcp(env, "siem", "alerts", "--json")
        assert alerts.returncode == 0, alerts.stderr
        listed = {a["alert_id"]: a["rule_name"] for a in json.loads(alerts.stdout)}
        for inc in report["incidents"]:
            assert listed.get(inc["alert_id"]) == inc["rule"], inc
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-3000:]


def _count(reader) -> int:  # noqa: ANN001 - DecisionLogReader
    from pdp.errors import StoreUnavailable

    try:
        return reader.count()
    except StoreUnavailable:  # created but no table yet (drivers report database errors as this)
        return 0


def test_a_seed_killed_mid_week_leaves_a_verifiable_ledger_and_can_be_redone(ztcp_home) -> None:
    from pdp.decision_log import DecisionLogReader

    env = {**os.environ, "ZTCP_HOME": str(ztcp_home), "ZTCP_ENGINE_TIMEOUT_MS": "2000"}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "demo", "seed", "--citizens", "300", "--days", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        log = ztcp_home / "decisions.db"
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and _count(DecisionLogReader(log)) >= 40:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the seed finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)  # kill -9 in the middle of the simulated week
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    verify = ztcp(env, "audit", "verify", timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr  # every durable event still proves out
    refused = ztcp(env, "demo", "seed", "--citizens", "300", "--days", "4")
    assert refused.returncode == 1 and "already seeded" in refused.stderr
    redone = ztcp(env, "demo", "seed", "--citizens", "300", "--days", "4", "--force", "--json", timeout=600)
    assert redone.returncode == 0, redone.stderr[-3000:]
    report = json.loads(redone.stdout)
    assert report["missed"] == [] and report["reads_equal_events"]
    assert ztcp(env, "audit", "verify", timeout=300).returncode == 0
