"""`ztcp siem …` end to end: exit codes, JSON output, crash safety of `run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import ztcp
from demo.siem_week import WEEK_START, Traffic, to_jsonl
from siem_rules.fixtures import synthetic_citizen_ref

ROOT = Path(__file__).resolve().parents[2]


def _invoke(*args: str, token: str | None = None):
    env = {"ZTCP_TOKEN": token} if token else {}
    return CliRunner(env=env).invoke(ztcp, ["siem", *args], catch_exceptions=False)


def _token(sub: str, role: str) -> str:
    result = CliRunner().invoke(ztcp, ["token", "issue", "--sub", sub, "--role", role, "--method", "fido2", "--mfa"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    t = Traffic(seed=8, employees=10)
    events = t.benign(days=2) + [e for _, evs in t.incidents().values() for e in evs]
    f = tmp_path / "events.jsonl"
    f.write_text("".join(to_jsonl(events)), encoding="utf-8")
    return f


def test_list_and_help() -> None:
    res = _invoke("list", "--json")
    assert res.exit_code == 0
    rules = json.loads(res.output)
    assert len(rules) >= 16 and {"name", "level", "logsource", "type"} <= set(rules[0])
    for sub in ("list", "test", "run", "alerts", "ack", "export"):
        assert _invoke(sub, "--help").exit_code == 0


def test_test_one_rule_and_unknown_rule() -> None:
    res = _invoke("test", "curiosity_swarm")
    assert res.exit_code == 0 and "fixture cases passed" in res.output
    bad = _invoke("test", "no_such_rule")
    assert bad.exit_code == 1 and "no such rule" in bad.output


def test_test_exits_1_when_a_fixture_fails(tmp_path: Path) -> None:
    # off-hours lists from this config (fixtures do not override them) make the `match` cases fail
    cfg = tmp_path / "siem.yml"
    cfg.write_text("off_hours: [12]\nweekend_days: []\n", encoding="utf-8")
    res = _invoke("test", "off_hours_access", "--config", str(cfg))
    assert res.exit_code == 1 and "FAIL" in res.output


def test_run_alerts_ack_flow(events_file: Path) -> None:
    res = _invoke("run", "--events", str(events_file), "--json")
    assert res.exit_code == 0, res.output
    raised = json.loads(res.output)
    assert len(raised) >= 20
    assert {
        "alert_id",
        "rule_id",
        "level",
        "group_keys",
        "evidence",
        "first_seen",
        "last_seen",
        "window_start",
        "window_end",
        "status",
    } <= set(raised[0])
    again = _invoke("run", "--events", str(events_file), "--json")
    assert json.loads(again.output) == []  # nothing new, nothing repeated
    target = raised[0]["alert_id"]
    soc = _token("emp-soc-9", "soc_analyst")
    assert _invoke("ack", target, token=soc).exit_code == 0
    acked = json.loads(_invoke("alerts", "--status", "acknowledged", "--json").output)
    assert [a["alert_id"] for a in acked] == [target]
    assert _invoke("ack", target, "--close", token=soc).exit_code == 0
    missing = _invoke("ack", "al_doesnotexist", token=soc)
    assert missing.exit_code == 1 and "no alert" in missing.output
    # The table (piped: 80 columns) shows every id and rule name whole, ready to paste into `ack`.
    table = _invoke("alerts").output
    for a in raised:
        assert a["alert_id"] in table and a["rule_name"] in table
    assert "…" not in table


def test_triage_needs_a_soc_analyst_and_records_who(events_file: Path) -> None:
    # Issue #13 finding 9: anyone on the host could silence an alert, and nobody could say who.
    raised = json.loads(_invoke("run", "--events", str(events_file), "--json").output)
    target = next(a for a in raised if a["group_keys"].get("actor"))
    aid, subject = target["alert_id"], target["group_keys"]["actor"]
    nobody = _invoke("ack", aid, "--close")
    assert nobody.exit_code == 2 and "needs a token with role soc_analyst" in nobody.output
    auditor = _invoke("ack", aid, "--close", token=_token("emp-aud-1", "auditor"))
    assert auditor.exit_code == 2 and "lacks role soc_analyst" in auditor.output
    assert json.loads(_invoke("alerts", "--json").output)[0]["status"] == "open" or all(
        a["status"] == "open" for a in json.loads(_invoke("alerts", "--json").output))
    # The analyst the alert is about closes it: done, recorded, and itself an alert.
    closed = _invoke("ack", aid, "--close", token=_token(subject, "soc_analyst"))
    assert closed.exit_code == 0 and f"(by {subject})" in closed.output
    assert _invoke("comment", aid, "false positive, the batch job was mine", token=_token(subject, "soc_analyst")
                   ).exit_code == 0
    refused = _invoke("comment", aid, "see A123456789", token=_token(subject, "soc_analyst"))
    assert refused.exit_code == 1 and "A123456789" not in refused.output
    history = json.loads(_invoke("history", aid, "--json").output)
    assert [(h["type"], h["actor"], h["self_review"]) for h in history] == [
        ("alert.close", subject, True), ("alert.comment", subject, True)]
    after = json.loads(_invoke("run", "--json").output)  # the live sources include the triage history
    selfies = [a for a in after if a["rule_name"] == "alert_self_review"]
    assert len(selfies) == 1 and selfies[0]["group_keys"] == {} or selfies[0]["evidence"]


def test_run_rejects_bad_input_and_since(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"kind": "decision", "decision_id": "x"}\n', encoding="utf-8")
    res = _invoke("run", "--events", str(f))
    assert res.exit_code == 1 and "bad.jsonl:1" in res.output
    assert _invoke("run", "--since", "last tuesday").exit_code == 1
    assert _invoke("alerts", "--status", "weird").exit_code == 1  # click usage error: an input error (README)


def test_export_targets_parse(tmp_path: Path) -> None:
    for target in ("esql", "eql", "lucene", "kibana-ndjson"):
        res = _invoke("export", "--target", target, "-o", str(tmp_path / target), "--json")
        assert res.exit_code == 0, res.output
        report = json.loads(res.output)
        assert report["exported"]
    lines = (tmp_path / "kibana-ndjson" / "ztcp-detection-rules.ndjson").read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert len(objs) >= 18
    assert {o["risk_score"] for o in objs} <= {21, 47, 73, 99}
    by_name = {o["name"]: o for o in objs}
    crit = by_name["Provenance ledger verification failed"]
    assert crit["severity"] == "critical" and crit["risk_score"] == 99
    # Queries name the fields the producers index: the ledger's actor and recipient are objects, a
    # pii.update's changed fields are its `fields` (key and policy events keep a plain `actor`).
    protected = (tmp_path / "lucene" / "protected_record_access.lucene").read_text()
    assert "NOT actor.id:" in protected
    fraud = (tmp_path / "eql" / "fraud_broker_read_then_account_change.eql").read_text()
    assert 'type:"pii.update" and (fields like~ ("bank_account", "address"))' in fraud and "(changed" not in fraud
    mass = (tmp_path / "esql" / "mass_export_or_disclosure.esql").read_text()
    assert "recipient.id==" in mass and "by timebucket, actor.id" in mass
    refused = (tmp_path / "esql" / "key_decrypt_refused_burst.esql").read_text()
    assert "by timebucket, actor\n" in refused


def test_kill_9_during_run_loses_and_duplicates_nothing(tmp_path: Path, events_file: Path) -> None:
    big = tmp_path / "big.jsonl"
    t = Traffic(seed=13, employees=120)
    events = t.benign(days=3) + [e for _, evs in t.incidents().values() for e in evs]
    big.write_text("".join(to_jsonl(events)), encoding="utf-8")
    env = dict(os.environ, ZTCP_HOME=str(tmp_path / "crash-home"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "siem", "run", "--events", str(big)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(float(os.environ.get('SIEM_KILL_AFTER', '2.5')))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "siem", "run", "--events", str(big)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "cli.main", "siem", "alerts", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    crashed = json.loads(listed.stdout)
    clean_env = dict(os.environ, ZTCP_HOME=str(tmp_path / "clean-home"))
    subprocess.run(
        [sys.executable, "-m", "cli.main", "siem", "run", "--events", str(big)],
        cwd=ROOT,
        env=clean_env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    clean = json.loads(
        subprocess.run(
            [sys.executable, "-m", "cli.main", "siem", "alerts", "--json"],
            cwd=ROOT,
            env=clean_env,
            capture_output=True,
            text=True,
        ).stdout
    )

    def key(a):
        return (a["alert_id"], a["event_count"], a["first_seen"], a["last_seen"])

    a, b = sorted(map(key, crashed)), sorted(map(key, clean))
    assert a == b, (set(a) - set(b), set(b) - set(a))


@pytest.mark.parametrize(("content", "message"), [
    ("protected_citizens: [cr_VIP0001\n", "not valid YAML"),
    ("protected_citizen: []\n", "protected_citizen"),
    ("- a list\n", "expected a mapping"),
    ("protected_citizens: [cr_VIP0001]\n", "protected_citizens.0"),  # not a real reference: never matches
    ("employee_citizen_refs: [A123456789]\n", "employee_citizen_refs.0"),  # a pasted national ID
])
def test_bad_config_is_a_clear_input_error(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "siem.yml"
    cfg.write_text(content, encoding="utf-8")
    res = _invoke("list", "--config", str(cfg))
    assert res.exit_code == 1 and message in res.output
    assert "A123456789" not in res.output
    assert _invoke("list", "--config", str(tmp_path / "missing.yml")).exit_code == 1


def test_config_list_changes_what_fires(tmp_path: Path) -> None:
    t = Traffic(seed=3, employees=2)
    listed = synthetic_citizen_ref("listed-1")
    vip = t.prov(WEEK_START + timedelta(hours=11), "emp-0002", listed, event_id="vip-1")  # Mon 11:00
    f = tmp_path / "e.jsonl"
    f.write_text("".join(to_jsonl([vip])), encoding="utf-8")
    cfg = tmp_path / "siem.yml"
    cfg.write_text(f"protected_citizens: [{listed}]\n", encoding="utf-8")
    res = _invoke("run", "--events", str(f), "--json", "--config", str(cfg))
    assert res.exit_code == 0, res.output
    assert [a["rule_name"] for a in json.loads(res.output)] == ["protected_record_access"]


def test_alerts_and_triage_on_the_shared_database(events_file: Path, pg_dsn: str, monkeypatch) -> None:  # noqa: ANN001
    """With ZTCP_DATABASE_URL, `ztcp siem` reads and triages the alerts every replica shares."""
    monkeypatch.setenv("ZTCP_DATABASE_URL", pg_dsn)
    raised = json.loads(_invoke("run", "--events", str(events_file), "--json").output)
    assert raised
    from siem_rules.pg_alerts import PostgresAlertStore

    shared = PostgresAlertStore(pg_dsn)
    try:
        assert {a.alert_id for a in shared.list()} == {a["alert_id"] for a in raised}  # in PostgreSQL
        aid = raised[0]["alert_id"]
        closed = _invoke("ack", aid, "--close", token=_token("emp-soc-1", "soc_analyst"))
        assert closed.exit_code == 0, closed.output
        assert shared.get(aid).status == "closed"
        history = json.loads(_invoke("history", aid, "--json").output)
        assert [(h["type"], h["actor"]) for h in history] == [("alert.close", "emp-soc-1")]
        listed = json.loads(_invoke("alerts", "--status", "closed", "--json").output)
        assert [a["alert_id"] for a in listed] == [aid]
        assert shared.verify_history()[0] is None
    finally:
        shared.close()


def test_an_unreachable_alert_database_is_one_line_exit_2(monkeypatch) -> None:  # noqa: ANN001
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ZTCP_DATABASE_URL", f"postgresql://ztcp:s3cret-pw@127.0.0.1:{port}/ztcp?connect_timeout=2")
    res = _invoke("history", "al_0123456789abcdef0123")
    assert res.exit_code == 2, res.output
    assert "alert store unavailable" in res.output and "s3cret-pw" not in res.output
    assert len(res.output.strip().splitlines()) == 1
