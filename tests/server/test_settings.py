"""Configuration errors are one clear line naming the variable, never a traceback or the value."""

from __future__ import annotations

from click.testing import CliRunner

from cli.main import ztcp


def test_a_bad_setting_names_the_variable_not_its_value(monkeypatch) -> None:
    monkeypatch.setenv("ZTCP_ENGINE_TIMEOUT_MS", "fifty-seven")
    res = CliRunner().invoke(ztcp, ["audit", "verify"])
    assert res.exit_code == 1
    assert "invalid configuration: ZTCP_ENGINE_TIMEOUT_MS" in res.output
    assert "fifty-seven" not in res.output and "Traceback" not in res.output


def test_a_vault_checkpoint_key_needs_vault(monkeypatch) -> None:
    monkeypatch.setenv("ZTCP_CHECKPOINT_KEY", "vault")
    res = CliRunner().invoke(ztcp, ["audit", "checkpoint"])
    assert res.exit_code == 1
    assert "ZTCP_CHECKPOINT_KEY=vault needs ZTCP_VAULT_ADDR" in res.output

