"""One error-to-exit mapping for every command (README: 0 ok, 1 usage/input, 2 refused, 3 integrity)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import _AREAS, ztcp


@pytest.fixture
def runner(ztcp_home, monkeypatch) -> CliRunner:  # noqa: ANN001
    monkeypatch.setenv("ZTCP_HOME", str(ztcp_home))
    return CliRunner()


@pytest.mark.parametrize("area", sorted(_AREAS))
def test_a_usage_error_is_an_input_error_in_every_command(runner: CliRunner, area: str) -> None:
    result = runner.invoke(ztcp, [area, "--no-such-option"])
    assert result.exit_code == 1, result.output
    assert "No such option" in result.output


def test_an_unknown_command_is_an_input_error(runner: CliRunner) -> None:
    result = runner.invoke(ztcp, ["frobnicate"])
    assert result.exit_code == 1 and "No such command" in result.output


def test_a_package_error_keeps_its_exit_code_and_is_one_line(runner: CliRunner, monkeypatch) -> None:  # noqa: ANN001
    # A refusal (2): an auditor command without a token.
    result = runner.invoke(ztcp, ["audit", "trace", "--citizen-ref", "cr_" + "A" * 52])
    assert result.exit_code == 2, result.output
    assert result.output.count("ztcp: error:") == 1 and "Traceback" not in result.output
    # A configuration error (1) raised while settings load, outside any command body.
    monkeypatch.setenv("ZTCP_ENGINE_TIMEOUT_MS", "soon")
    result = runner.invoke(ztcp, ["audit", "verify"])
    assert result.exit_code == 1 and "invalid configuration: ZTCP_ENGINE_TIMEOUT_MS" in result.output
    assert "soon" not in result.output


def test_help_and_version_exit_zero(runner: CliRunner) -> None:
    assert runner.invoke(ztcp, ["--help"]).exit_code == 0
    assert runner.invoke(ztcp, ["--version"]).exit_code == 0
    assert runner.invoke(ztcp, ["keys", "--help"]).exit_code == 0
