"""`ztcp audit verify --all`: every log of an installation checked together; the first bad record named."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import contracts
import keymgmt
from cli.main import ztcp
from pdp.sqlite_stores import SqliteDecisionStore
from server.bootstrap import system_keys
from server.ledger import ledger_from_settings
from server.log_integrity import sign_heads
from server.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.alert_rules import Rule  # noqa: E402

T0 = 1795399200.0


def decision(i: int) -> dict:
    return {"decision_id": f"d-{i:06d}", "timestamp": "2026-11-23T02:00:00Z", "ts": T0 + i,
            "path": "ztcp/authz/decision",
            "input": {"subject": {"id": "emp-1"}, "resource": {"citizen_ref": f"cr_{i}"}},
            "result": {"effect": "permit"}, "bundles": {"ztcp": {"revision": "r1"}}}


@pytest.fixture
def home(ztcp_home: Path) -> Path:
    settings = load_settings()
    system_keys(settings).ensure_all()
    with ledger_from_settings(settings) as led:
        led.append([contracts.ProvenanceEvent(type="pii.read", actor="emp-9", citizen_ref="cr_" + "B" * 52,
                                              dataset="claims", record_id=str(i), fields=["claim_status"],
                                              purpose="benefit_review", time=datetime.now(UTC)) for i in range(20)])
        led.checkpoint()
    store = SqliteDecisionStore(ztcp_home / "decisions.db")
    store.write([decision(i) for i in range(1, 31)])
    store.close()
    audit = keymgmt.KeyAuditLog(keymgmt.default_audit_path(ztcp_home))
    for _ in range(5):
        audit.record(type="key.rotate", actor="os:admin", key_name="data-kek")
    audit.close()
    from siem_rules import AlertStore, connect
    from siem_rules.alerts import Hit

    alerts = AlertStore(connect(ztcp_home / "siem.db"))
    for n in range(3):  # three alerts, each created, acknowledged and closed: nine history rows
        (alert_id,) = alerts.merge(Rule(), [Hit(group={"actor": f"emp-{n}"}, window_start=100.0 + n,
                                                window_end=100.0 + n, evidence=[(100.0 + n, f"e{n}")], gap=600.0)],
                                   "2026-01-10T00:00:00Z")
        alerts.set_status(alert_id, "acknowledged", actor="soc-1")
        alerts.set_status(alert_id, "closed", actor="soc-1")
    alerts.close()
    assert sign_heads(settings) == {"decision_log": 30, "key_audit": 5, "alert_history": 9}
    assert sign_heads(settings) == {}  # nothing new: nothing signed again
    return ztcp_home


def verify_all() -> tuple[int, str]:
    result = CliRunner().invoke(ztcp, ["audit", "verify", "--all"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_an_intact_installation_verifies_every_log(home: Path) -> None:
    code, out = verify_all()
    assert code == 0, out
    assert "ok: ledger: 20 records" in out
    assert "ok: decision_log: 30 records, 1 signed heads" in out
    assert "ok: key_audit: 5 records" in out
    assert "ok: alert_history: 9 records, 1 signed heads" in out
    doc = orjson.loads(CliRunner().invoke(ztcp, ["audit", "verify", "--all", "--json"]).output.splitlines()[0])
    assert doc["ok"] is True
    assert [d["log"] for d in doc["logs"]] == ["ledger", "decision_log", "key_audit", "alert_history"]


def test_alert_history_truncated_with_its_head_row_rewritten_is_caught(home: Path) -> None:
    db = sqlite3.connect(home / "siem.db")
    db.execute("DELETE FROM siem_alert_history WHERE seq >= 8")
    db.execute("UPDATE siem_alert_chain SET seq = 7, link = (SELECT link FROM siem_alert_history WHERE seq = 7)")
    db.commit()
    code, out = verify_all()
    assert code == 3 and "FAILED: alert_history: record 8" in out and "truncated" in out


def test_an_altered_alert_history_row_is_named(home: Path) -> None:
    db = sqlite3.connect(home / "siem.db")
    db.execute("UPDATE siem_alert_history SET actor = 'soc-2' WHERE seq = 4")
    db.commit()
    code, out = verify_all()
    assert code == 3 and "FAILED: alert_history: record 4" in out


def test_an_altered_decision_is_named_with_its_log_and_position(home: Path) -> None:
    db = sqlite3.connect(home / "decisions.db")
    forged = decision(12) | {"result": {"effect": "deny"}}
    db.execute("UPDATE decisions SET entry = ? WHERE seq = 12", (orjson.dumps(forged),))
    db.commit()
    code, out = verify_all()
    assert code == 3
    assert "FAILED: decision_log: record 12" in out
    assert out.count("ztcp: error:") == 1 and "decision_log integrity failure at record 12" in out
    assert "ok: key_audit" in out  # the other logs are still checked and reported


def test_a_truncated_tail_is_caught_by_the_signed_head(home: Path) -> None:
    db = sqlite3.connect(home / "keyaudit.db")
    db.execute("DELETE FROM key_audit WHERE seq >= 4")  # and the head row rewritten to match: still caught
    db.execute("UPDATE key_audit_chain SET head = (SELECT link FROM key_audit WHERE seq = 3)")
    db.commit()
    code, out = verify_all()
    assert code == 3 and "FAILED: key_audit: record 4" in out and "truncated" in out


def test_a_forged_signed_head_or_prune_mark_fails(home: Path) -> None:
    db = sqlite3.connect(home / "decisions.db")
    db.execute("UPDATE decision_heads SET note = replace(note, '30', '31')")
    db.commit()
    code, out = verify_all()
    assert code == 3 and "decision_log: record 30" in out
    db.execute("DELETE FROM decision_heads")
    db.commit()
    assert verify_all()[0] == 0
    # Deleting old entries and writing an unsigned mark for the gap: not accepted.
    link = db.execute("SELECT link FROM decisions WHERE seq = 5").fetchone()[0]
    db.execute("DELETE FROM decisions WHERE seq <= 5")
    db.execute("INSERT INTO decision_prune_marks VALUES (0, 5, ?, 5, NULL, 0)", (link,))
    db.commit()
    code, out = verify_all()
    assert code == 3 and "decision_log: record 5: its prune mark is not validly signed" in out


def test_an_altered_ledger_event_fails_the_whole_run(home: Path) -> None:
    db = sqlite3.connect(home / "provenance.db")
    db.execute("UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), 'emp-9', 'emp-8') AS BLOB) WHERE seq = 3")
    db.commit()
    code, out = verify_all()
    assert code == 3 and "FAILED: ledger" in out and "ok: decision_log" in out


def test_the_scheduler_upkeep_signs_heads_and_applies_retention_when_due(ztcp_home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What runs after each SIEM run on the leader (server.siem.make_scheduler's after-run hook)."""
    from server.log_upkeep import LogUpkeep
    from server.retention import retention_status

    monkeypatch.setenv("ZTCP_RETENTION_INTERVAL_HOURS", "1")
    settings = load_settings()
    system_keys(settings).ensure_all()
    store = SqliteDecisionStore(ztcp_home / "decisions.db")
    store.write([decision(i) for i in range(1, 6)])
    clock = [1000.0]
    upkeep = LogUpkeep(settings, clock=lambda: clock[0])
    upkeep()
    assert upkeep.signed == {"decision_log": 5} and upkeep.last_error is None
    first = retention_status(settings)["last_run"]["at"]
    store.write([decision(6)])
    clock[0] += 60  # a minute later: heads signed again, retention not due yet
    upkeep()
    assert upkeep.signed == {"decision_log": 6}
    assert retention_status(settings)["last_run"]["at"] == first
    clock[0] += 3600
    upkeep()
    assert retention_status(settings)["last_run"]["at"] != first
    store.close()
    assert verify_all()[0] == 0
