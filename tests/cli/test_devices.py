"""`ztcp devices`: the inventory the gateway takes device posture from (issue #13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import ztcp


@pytest.fixture
def runner(ztcp_home: Path) -> CliRunner:  # noqa: ARG001 - ztcp_home sets ZTCP_HOME
    return CliRunner()


def _token(runner: CliRunner, role: str) -> str:
    result = runner.invoke(ztcp, ["token", "issue", "--sub", "emp-dev-admin", "--role", role, "--method", "fido2",
                                  "--mfa"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_changes_need_a_device_admin_and_record_who(runner: CliRunner, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(ztcp, ["devices", "register", "dev-1"]).exit_code == 2  # no token: refused
    monkeypatch.setenv("ZTCP_TOKEN", _token(runner, "auditor"))
    refused = runner.invoke(ztcp, ["devices", "register", "dev-1"])
    assert refused.exit_code == 2 and "lacks role device_admin" in refused.output
    monkeypatch.setenv("ZTCP_TOKEN", _token(runner, "device_admin"))
    ok = runner.invoke(ztcp, ["devices", "register", "dev-1", "--no-edr", "--patch-age-days", "40", "--json"])
    assert ok.exit_code == 0, ok.output
    (record,) = json.loads(ok.output)
    assert record["registered_by"] == "emp-dev-admin" and record["posture"]["edr_running"] is False
    csv = tmp_path / "devices.csv"
    csv.write_text("device_id,managed,compliant\ndev-2,true,true\ndev-3,false,false\n")
    assert "2 device(s) enrolled" in runner.invoke(ztcp, ["devices", "import", str(csv)]).output
    assert runner.invoke(ztcp, ["devices", "revoke", "dev-2"]).exit_code == 0
    again = runner.invoke(ztcp, ["devices", "revoke", "dev-2"])
    assert again.exit_code == 2 and "already_revoked" in again.output
    listed = json.loads(runner.invoke(ztcp, ["devices", "list", "--json"]).output)
    assert [(d["device_id"], d["revoked_by"]) for d in listed] == [
        ("dev-1", None), ("dev-2", "emp-dev-admin"), ("dev-3", None)]
    bad = runner.invoke(ztcp, ["devices", "register", "a b"])
    assert bad.exit_code == 1 and "bad_device_id" in bad.output
