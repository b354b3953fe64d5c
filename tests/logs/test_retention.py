"""Retention per store with legal holds: `ztcp logs retention [--apply]`, `ztcp logs hold add|list|release`."""

from __future__ import annotations

import copy
import sqlite3
import sys
import time
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
from server.identity import dev_issuer
from server.retention import retention_status
from server.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY = 86400.0
NOW = time.time()
HELD = "cr_" + "H" * 52
OTHER = "cr_" + "O" * 52


def decision(i: int, age_days: float, ref: str = OTHER, case: str | None = None) -> dict:
    """A complete decision-log entry (the SIEM's fixture default) of citizen ``ref`` and ``case``."""
    from siem_rules.fixtures import DEFAULTS

    ts = NOW - age_days * DAY
    e = copy.deepcopy(DEFAULTS["decision"])
    when = datetime.fromtimestamp(ts, UTC)
    e.update(decision_id=f"d-{i:06d}", timestamp=when.isoformat(), ts=ts)
    e["input"]["context"]["time"] = when.isoformat()
    e["input"]["resource"]["citizen_ref"] = ref
    e["input"]["purpose"]["case_id"] = case
    return e


def run(*args: str, token: str | None = None, stdin: str | None = None) -> tuple[int, str]:
    env = {"ZTCP_TOKEN": token} if token else None
    result = CliRunner().invoke(ztcp, list(args), env=env, input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def home(ztcp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZTCP_RETENTION_DECISIONS_DAYS", "30")
    monkeypatch.setenv("ZTCP_RETENTION_KEY_AUDIT_DAYS", "30")
    settings = load_settings()
    system_keys(settings).ensure_all()
    store = SqliteDecisionStore(ztcp_home / "decisions.db")
    # 40 old decisions (3 of the held citizen, 2 of the held case), then 10 recent ones.
    old = [decision(i, 60 - i * 0.1, HELD if i in (5, 17, 30) else OTHER, "case-77" if i in (8, 9) else None)
           for i in range(1, 41)]
    store.write(old + [decision(i, 1) for i in range(41, 51)])
    store.close()
    audit = keymgmt.KeyAuditLog(keymgmt.default_audit_path(ztcp_home))
    for day in (90, 60, 1):
        audit.record(type="key.rotate", actor="os:admin", key_name="data-kek",
                     time=datetime.fromtimestamp(NOW - day * DAY, UTC))
    audit.close()
    return ztcp_home


def auditor() -> str:
    settings = load_settings()
    return dev_issuer(settings, system_keys(settings)).issue_subject("auditor-3", ["auditor"], mfa=True,
                                                                      ttl_seconds=600)


def test_holds_are_placed_by_auditors_listed_and_released(home: Path) -> None:
    code, out = run("logs", "hold", "add", "--citizen-ref", HELD, "--reason", "court order 2026-17")
    assert code == 2 and "role auditor" in out  # no token: refused
    token = auditor()
    code, out = run("logs", "hold", "add", "--national-id", "-", "--reason", "case file 9", token=token,
                    stdin="A123456789\n")
    assert code == 0, out
    ref = contracts.citizen_ref("A123456789", system_keys(load_settings()).blind_index)
    assert ref in out and "A123456789" not in out
    raw = (home / "legal_holds.db").read_bytes()
    assert b"A123456789" not in raw and ref.encode() in raw  # only the reference is stored
    code, out = run("logs", "hold", "add", "--case", "case-77", "--reason", "appeal", "--json", token=token)
    case_hold = orjson.loads(out)["hold_id"]
    holds = orjson.loads(run("logs", "hold", "list", "--json")[1])
    assert {(h["kind"], h["subject"]) for h in holds} == {("citizen", ref), ("case", "case-77")}
    assert run("logs", "hold", "release", case_hold, token=token)[0] == 0
    assert [h["kind"] for h in orjson.loads(run("logs", "hold", "list", "--json")[1])] == ["citizen"]
    released = [h for h in orjson.loads(run("logs", "hold", "list", "--all", "--json")[1]) if not h["active"]]
    assert released[0]["released_by"] == "auditor-3"
    assert run("logs", "hold", "release", case_hold, token=token)[0] == 1  # not active any more
    assert run("logs", "hold", "add", "--citizen-ref", "A123456789", "--reason", "x", token=token)[0] == 1


def test_dry_run_deletes_nothing_apply_keeps_held_records_and_chains_verify(home: Path) -> None:
    token = auditor()
    run("logs", "hold", "add", "--citizen-ref", HELD, "--reason", "court order", token=token)
    run("logs", "hold", "add", "--case", "case-77", "--reason", "appeal", token=token)
    code, out = run("logs", "retention", "--json")
    assert code == 0, out
    dry = {s["store"]: s for s in orjson.loads(out)["stores"]}
    assert (dry["decisions"]["deleted"], dry["decisions"]["kept_by_hold"]) == (35, 5)
    assert dry["key_audit"]["deleted"] == 2
    assert dry["console_sessions"]["status"] == "absent"
    assert SqliteDecisionStore(home / "decisions.db", readonly=True).count() == 50
    code, out = run("logs", "retention", "--apply", "--json")
    assert code == 0, out
    store = SqliteDecisionStore(home / "decisions.db", readonly=True)
    kept = {e["decision_id"] for e in store.entries(since=0)}
    assert kept == {f"d-{i:06d}" for i in (5, 8, 9, 17, 30, *range(41, 51))}
    assert len(store.prune_marks()) == 5  # runs split by the held entries, each mark signed
    assert all(m.note for m in store.prune_marks())
    status = retention_status(load_settings())
    assert status["holds"] == 2 and status["last_run"]["applied"] is True
    assert {s["store"]: s["deleted"] for s in status["last_run"]["stores"]}["decisions"] == 35
    code, out = run("audit", "verify", "--all")
    assert code == 0, out
    assert "decision_log: 15 records, 35 pruned" in out and "key_audit: 1 records, 2 pruned" in out


def test_retention_is_refused_when_the_holds_cannot_be_read(home: Path) -> None:
    (home / "legal_holds.db").write_bytes(b"this is not a database" * 100)
    code, out = run("logs", "retention", "--apply")
    assert code == 2 and out.count("ztcp: error:") == 1 and "retention refused" in out
    assert SqliteDecisionStore(home / "decisions.db", readonly=True).count() == 50


def test_zero_days_keeps_a_store_forever(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTCP_RETENTION_DECISIONS_DAYS", "0")
    doc = orjson.loads(run("logs", "retention", "--apply", "--json")[1])
    assert {s["store"]: s["status"] for s in doc["stores"]}["decisions"] == "kept forever"
    assert SqliteDecisionStore(home / "decisions.db", readonly=True).count() == 50


def test_siem_events_of_held_citizens_stay(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pdp.decision_log import DecisionLog
    from server.retention import run_retention
    from server.siem import DB_NAME, make_engine
    from siem_rules import CallableSource

    monkeypatch.setenv("ZTCP_RETENTION_SIEM_EVENTS_DAYS", "30")
    settings = load_settings()
    (home / "siem.yml").write_text("protected_citizens: []\n", encoding="utf-8")
    engine = make_engine(settings)
    engine.ingest([CallableSource("decisions", "decision", DecisionLog.reader(home / "decisions.db").events_after)])
    engine.conn.close()
    token = auditor()
    run("logs", "hold", "add", "--citizen-ref", HELD, "--reason", "court order", token=token)
    report = run_retention(settings, apply=True, only=("siem_events",))
    outcome = report.stores[0]
    assert (outcome.deleted, outcome.kept_by_hold) == (37, 3)
    db = sqlite3.connect(home / DB_NAME)
    refs = [r[0] for r in db.execute("SELECT citizen_ref FROM ev_decision WHERE ts < ?", (NOW - 30 * DAY,))]
    assert refs == [HELD] * 3


def test_closed_alerts_go_unless_their_evidence_concerns_a_held_citizen(home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.alert_rules import Rule

    from pdp.decision_log import DecisionLog
    from server.retention import run_retention
    from server.siem import DB_NAME, make_engine
    from siem_rules import AlertStore, CallableSource, connect
    from siem_rules.alerts import Hit

    monkeypatch.setenv("ZTCP_RETENTION_ALERTS_DAYS", "30")
    settings = load_settings()
    (home / "siem.yml").write_text("protected_citizens: []\n", encoding="utf-8")
    engine = make_engine(settings)
    engine.ingest([CallableSource("decisions", "decision", DecisionLog.reader(home / "decisions.db").events_after)])
    engine.conn.close()
    alerts = AlertStore(connect(home / DB_NAME))
    ids = []
    # d-000005 is the held citizen's. The alert history is pruned as a prefix only (siem_rules), so
    # the held alert, last here, stays and stops the cut behind it.
    for n, evidence in enumerate(("d-000001", "d-000002", "d-000005")):
        (alert_id,) = alerts.merge(Rule(), [Hit(group={"actor": f"emp-{n}"}, window_start=1.0 + n,
                                                window_end=1.0 + n, evidence=[(1.0 + n, evidence)], gap=600.0)],
                                   "2026-01-10T00:00:00Z")
        alerts.set_status(alert_id, "closed", actor="soc-1")
        ids.append(alert_id)
    alerts.close()
    run("logs", "hold", "add", "--citizen-ref", HELD, "--reason", "court order", token=auditor())
    later = NOW + 60 * DAY  # the alerts were closed today: look from two months on
    dry = run_retention(settings, apply=False, now=later, only=("alerts",)).stores[0]
    assert (dry.deleted, dry.kept_by_hold) == (2, 1)
    done = run_retention(settings, apply=True, now=later, only=("alerts",)).stores[0]
    assert done.deleted == 2
    alerts = AlertStore(connect(home / DB_NAME))
    try:
        assert [a.alert_id for a in alerts.list()] == [ids[2]]
        assert alerts.verify_history()[0] is None  # the chain still verifies after the prune
    finally:
        alerts.close()


def test_on_postgresql_decisions_holds_and_console_sessions(ztcp_home: Path, pg_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With ZTCP_DATABASE_URL: the shared decision log, the holds and the console sessions in PostgreSQL."""
    import psycopg

    from console.pg_sessions import PostgresSessionStore
    from pdp.pg_stores import PostgresDecisionStore
    from server.holds import hold_store
    from server.retention import run_retention

    monkeypatch.setenv("ZTCP_DATABASE_URL", pg_url)
    monkeypatch.setenv("ZTCP_RETENTION_DECISIONS_DAYS", "30")
    monkeypatch.setenv("ZTCP_RETENTION_CONSOLE_SESSIONS_DAYS", "30")
    settings = load_settings()
    pg_url = settings.database_url or ""  # plain postgresql:// for psycopg
    system_keys(settings).ensure_all()
    store = PostgresDecisionStore(pg_url)
    store.write([decision(i, 60 - i * 0.1, HELD if i == 3 else OTHER) for i in range(1, 11)]
                + [decision(i, 1) for i in range(11, 16)])
    store.close()
    PostgresSessionStore(pg_url, 600, 3600).close()
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("INSERT INTO console_sessions VALUES ('old', '\\x00', %s, %s), ('new', '\\x00', %s, %s)",
                   (NOW - 90 * DAY, NOW - 90 * DAY, NOW, NOW))
    hold_store(settings).add("citizen", HELD, "court order", "aud-1")
    report = {s.store: s for s in run_retention(settings, apply=True).stores}
    assert (report["decisions"].deleted, report["decisions"].kept_by_hold) == (9, 1)
    assert report["console_sessions"].deleted == 1
    store = PostgresDecisionStore(pg_url, readonly=True)
    try:
        assert store.count() == 6 and store.get("d-000003") is not None
        from contracts.chained_log import verify_log

        assert verify_log(store, None).ok
    finally:
        store.close()
    code, out = run("audit", "verify", "--all")
    assert code == 0, out
    assert "decision_log: 6 records, 9 pruned" in out
