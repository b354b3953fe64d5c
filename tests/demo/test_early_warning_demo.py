"""`ztcp demo early-warning`: the planted cases caught with their explanations, the false-positive rate
on the benign weeks, and the critical alert's email as a real SMTP server (aiosmtpd) received it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli.main import ztcp


def test_the_demo_reports_caught_cases_the_false_positive_rate_and_the_email(tmp_path: Path,
                                                                             ztcp_home: Path) -> None:
    result = CliRunner().invoke(ztcp, ["demo", "early-warning", "--json", "--dir", str(tmp_path / "ew")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["planted"] == doc["caught"] == 6 and doc["missed"] == []
    assert "citizens today; usual" in doc["explanations"]["low_and_slow"]
    assert "; peers " in doc["explanations"]["low_and_slow"]
    assert doc["employee_days_scored"] >= 1000
    assert doc["false_positives_per_1000_employee_days"] <= 3.0
    mail = doc["email"]
    assert mail["to"] == "soc@bureau.example"
    assert mail["subject"].startswith("[ztcp] CRITICAL alert fraud_broker_read_then_account_change open")
    assert "/console/alerts/al_" in mail["body"] and "no personal data" in mail["body"]
    assert "cr_" not in mail["body"]  # no citizen reference, let alone a national ID, in a notification
    assert not ztcp_home.exists() or not any(ztcp_home.iterdir())  # ZTCP_HOME untouched
