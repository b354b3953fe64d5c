"""The `ztcp token issue` and `ztcp pdp decide` commands, through click with the real runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import ztcp

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "decision-request.json"


@pytest.fixture
def runner():
    return CliRunner()


def issue(runner, *args):
    result = runner.invoke(ztcp, ["token", "issue", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_token_issue_subject_and_client(runner):
    subject = issue(runner, "--sub", "emp-1", "--role", "case_officer", "--method", "fido2", "--mfa",
                    "--ttl", "15m")
    client = issue(runner, "--client", "counter-app", "--scope", "pdp:decide")
    assert subject.count(".") == 2 and client.count(".") == 2 and subject != client
    doc = json.loads(issue(runner, "--client", "x", "--scope", "pdp:decide", "--json"))
    assert set(doc) == {"token", "expires_at", "kid"}


@pytest.mark.parametrize("args,message", [
    (["--role", "case_officer"], "either --sub"),
    (["--sub", "a", "--client", "b"], "either --sub"),
    (["--client", "b"], "at least one scope"),
    (["--sub", "a", "--scope", "pdp:decide"], "--scope is for client"),
    (["--sub", "a", "--ttl", "forever"], "not a duration"),
])
def test_token_issue_usage_errors(runner, args, message):
    result = runner.invoke(ztcp, ["token", "issue", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_pdp_decide_permit_then_step_up_exit_codes(runner, monkeypatch, tmp_path):
    token = issue(runner, "--sub", "emp-0042", "--role", "case_officer", "--method", "fido2", "--mfa")
    monkeypatch.setenv("ZTCP_SUBJECT_TOKEN", token)
    monkeypatch.setenv("ZTCP_ENGINE_TIMEOUT_MS", "2000")
    result = runner.invoke(ztcp, ["pdp", "decide", "--input", str(EXAMPLE), "--json", "--explain"])
    decision = json.loads(result.output)
    assert result.exit_code == (0 if decision["effect"] == "permit" else 2)
    assert decision["explain"]["input"]["signals"]["auth_strength"] == 3
    doc = json.loads(EXAMPLE.read_text())
    doc["device"] = {"id": "unknown-laptop", "managed": False, "compliant": False}
    doc["context"] = {"network_zone": "internet"}
    weak = tmp_path / "weak.json"
    weak.write_text(json.dumps(doc))
    result = runner.invoke(ztcp, ["pdp", "decide", "--input", str(weak)])
    assert result.exit_code == 2
    assert "unmanaged_device" in result.output


def test_pdp_decide_bad_input_is_exit_1_with_location(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("ZTCP_SUBJECT_TOKEN", "x" * 40)
    bad = tmp_path / "bad.json"
    bad.write_text('{"device": {"id": "d"},\n "action": ')
    result = runner.invoke(ztcp, ["pdp", "decide", "--input", str(bad)])
    assert result.exit_code == 1 and "bad.json:2:" in result.output
    bad.write_text(json.dumps({"subject_token": "x" * 40, "action": "fly"}))
    result = runner.invoke(ztcp, ["pdp", "decide", "--input", str(bad)])
    assert result.exit_code == 1 and "action" in result.output
    result = runner.invoke(ztcp, ["pdp", "decide", "--input", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and "cannot read" in result.output


def test_home_is_private(runner, ztcp_home):
    issue(runner, "--client", "x", "--scope", "pdp:decide")
    assert ztcp_home.stat().st_mode & 0o777 == 0o700
    for path in ztcp_home.iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path
