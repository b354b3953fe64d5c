"""`ztcp demo seed` end to end on a real home: the bureau through the real gateway, ledger, decision
log, key audit and SIEM; then the checks an auditor would make."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import ztcp
from demo import bureau as b
from demo.seed import SeedOptions, seed
from server.settings import load_settings

END = datetime(2026, 3, 6, 10, 0, tzinfo=UTC).timestamp()  # Friday 18:00 in Taipei
CITIZENS = 150
SEED = 21
NID = re.compile(rb"(?<![A-Za-z0-9+/])[A-Z][12][0-9]{8}(?![0-9])")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("demo") / "home"
    settings = load_settings(home=home, engine_timeout_ms=2000)
    report = seed(settings, SeedOptions(citizens=CITIZENS, days=3, seed=SEED, end=END))
    return settings, report, home


def _run(home: Path, *args: str):
    return CliRunner().invoke(ztcp, list(args), env={"ZTCP_HOME": str(home)}, catch_exceptions=False)


def _store_bytes(home: Path) -> dict[str, bytes]:
    """Every store and file the demo wrote, with SQLite WAL files (recent pages live there)."""
    out = {}
    for path in sorted(home.iterdir()):
        if path.is_file() and path.suffix != ".tmp" and not path.name.startswith("protected.db"):
            out[path.name] = path.read_bytes()
    return out


def test_every_planted_incident_raises_its_rule(seeded) -> None:
    _, report, home = seeded
    assert report.missed == []
    assert {i.name for i in report.incidents} == {"vip_snooping", "off_hours_export", "fraud_broker",
                                                  "account_takeover", "custodian_bulk_decrypt",
                                                  "suspended_exchange"}
    listed = json.loads(_run(home, "siem", "alerts", "--json").output)
    by_id = {a["alert_id"]: a for a in listed}
    for inc in report.incidents:
        assert inc.alert_id in by_id, inc.name
        assert by_id[inc.alert_id]["rule_name"] == inc.rule


def test_a_refused_disclosure_leaves_the_bureau_unrecorded_as_sent(seeded) -> None:
    """The suspended-exchange incident: every attempt was decided (and refused) on its recipient, the
    ledger shows refusals and no pii.disclose to that agency, and the decisions are the alert's evidence."""
    settings, report, home = seeded
    inc = next(i for i in report.incidents if i.name == "suspended_exchange")
    from pdp.decision_log import DecisionLogReader

    reader = DecisionLogReader(home / "decisions.db")
    attempts = [e for e in reader.entries() if e["input"]["action"] == "disclose"
                and (e["input"].get("recipient") or {}).get("id") == "agency-legacy"]
    assert len(attempts) == 3
    assert all(e["result"]["effect"] == "deny" and "agreement_not_approved" in e["result"]["reasons"]
               for e in attempts)
    from server.ledger import ledger_from_settings

    with ledger_from_settings(settings) as led:
        sent = [e.event for e in led.entries() if e.event.type == "pii.disclose"
                and e.event.recipient and e.event.recipient.id == "agency-legacy"]
        refused = {e.event.decision_id for e in led.entries() if e.event.type == "pii.denied"}
    assert sent == [] and {e["decision_id"] for e in attempts} <= refused
    alert = json.loads(_run(home, "siem", "alerts", "--rule", inc.rule, "--json").output)
    assert {e["decision_id"] for e in attempts} <= set(alert[0]["evidence"])


def test_every_plaintext_read_is_one_ledger_event(seeded) -> None:
    _, report, _ = seeded
    assert report.reads > 50 and report.reads == report.read_events
    assert {"pii.read", "pii.search", "pii.update", "pii.disclose", "pii.denied"} <= set(report.events)
    assert report.events["pii.update"] == sum(n for k, n in report.responses.items() if k == "update 200")
    assert report.events["pii.disclose"] == sum(n for k, n in report.responses.items() if k == "disclose 201")
    assert {"permit", "step_up", "deny"} <= set(report.decisions)


def test_benign_week_raises_no_other_alerts(seeded) -> None:
    _, report, _ = seeded
    expected = {i.rule for i in report.incidents} | {"off_hours_access"}  # incident actors work late too
    expected.add("shared_bank_account")  # the fraud broker's victims all paid into one mule account
    expected.add("claims_fraud_indicators")  # the same mule account, seen by its current payees
    expected.add("exchange_receipt_overdue")  # the nightly transfer whose receipt never comes (planted)
    # A rule whose alert carries a planted incident's evidence or actor caught that incident (since the
    # nightly exchange decrypts with data-kek first, the custodian's bulk job is also a first-seen principal).
    expected |= {r for i in report.incidents for r in i.caught_by}
    assert set(report.alerts_by_rule) <= expected, report.alerts_by_rule


def test_the_nightly_exchange_is_receipted_but_for_one_transfer_which_alerts(seeded) -> None:
    _, report, home = seeded
    ex = report.exchange
    assert [t["agency"] for t in ex["transfers"]] == ["agency-tax", "agency-ris", "agency-nhia"]
    nhia = ex["transfers"][2]["transfer_id"]
    assert ex["overdue"] == [nhia] and nhia not in ex["receipts"] and len(ex["receipts"]) == 2
    assert len(ex["overdue_alerts"]) == 1 and report.alerts_by_rule["exchange_receipt_overdue"] == 1
    assert ex["inbound"]["citizens"] == 40
    # Every transfer directory verifies offline; the acknowledged ones carry their receipt.
    from exchange.verify import verify_transfer

    for t in ex["transfers"]:
        result = verify_transfer(Path(t["output_dir"]), require_receipt=t["agency"] != "agency-nhia")
        assert result.ok, result.as_dict()


def test_the_fraud_brokers_mule_account_is_seen_by_its_reference(seeded) -> None:
    # Three or more victims' payouts redirected to one account: the gateway recorded each change with
    # the account's keyed reference, so the fraud-ring rule fires on real events.
    _, report, _ = seeded
    assert report.alerts_by_rule.get("shared_bank_account", 0) >= 1


def test_no_national_id_or_name_outside_the_encrypted_tables(seeded) -> None:
    _, report, home = seeded
    bureau = b.build_bureau(SEED, CITIZENS, date(2026, 3, 6))
    stores = _store_bytes(home)
    assert {"decisions.db", "directory.json", "bureau-data.json", "siem.db", "keyaudit.db"} <= set(stores)
    ledger = [name for name in stores if name.startswith("provenance") or name.startswith("ledger")]
    assert ledger, sorted(stores)
    refs = json.loads(stores["bureau-data.json"])["protected_citizens"]
    assert any(refs[0].encode() in data for data in stores.values() if data)  # the scan can see references
    for name, data in stores.items():
        assert not NID.search(data), name
        for c in bureau.citizens:
            assert c.person.name.encode() not in data, name
            assert c.person.national_id.encode() not in data, name


def test_protected_tables_hold_only_ciphertext(seeded) -> None:
    _, _, home = seeded
    with sqlite3.connect(home / "protected.db") as db:
        for table, spec in b.TABLES.items():
            cols = ", ".join(spec["protected"])
            rows = db.execute(f"SELECT {cols} FROM {table}").fetchall()  # noqa: S608
            assert rows, table
            assert all(v is None or v.startswith("ze1:") for row in rows for v in row), table
            raw = db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
            assert not NID.search(repr(raw).encode()), table


def test_ledger_verifies(seeded) -> None:
    _, _, home = seeded
    result = _run(home, "audit", "verify")
    assert result.exit_code == 0, result.output


def test_a_seeded_home_is_refused_without_force(seeded) -> None:
    settings, _, home = seeded
    before = _store_bytes(home)["directory.json"]
    result = _run(home, "demo", "seed", "--citizens", "60", "--days", "2")
    assert result.exit_code == 1
    assert "already seeded" in result.output and "--force" in result.output
    assert _store_bytes(home)["directory.json"] == before


def test_force_rebuilds_and_appends_another_week(seeded) -> None:
    settings, first, home = seeded
    again = seed(settings, SeedOptions(citizens=CITIZENS, days=3, seed=SEED, end=END + 7 * 86400, force=True))
    assert again.missed == [] and again.reads == again.read_events
    assert _run(home, "audit", "verify").exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--citizens", "10"], "--citizens must be between 50"),
    (["--citizens", "many"], "--citizens must be a whole number"),
    (["--days", "1"], "--days must be between 2"),
    (["--days", "400"], "--days must be between 2"),
    (["--seed=-3"], "--seed must be between 0"),
    (["--nonsense"], "No such option"),
])
def test_bad_flags_exit_1_with_a_clear_message(ztcp_home: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(ztcp, ["demo", "seed", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.startswith("ztcp: error:")
    assert not (ztcp_home / "directory.json").exists()


@pytest.mark.parametrize("end", [
    datetime(2026, 3, 8, 8, 30, tzinfo=UTC).timestamp(),  # Sunday 16:30 in Taipei: --days 2 holds no workday
    datetime(2026, 3, 9, 1, 0, tzinfo=UTC).timestamp(),  # Monday 09:00 in Taipei
])
def test_a_short_window_on_any_day_still_catches_every_incident(tmp_path: Path, end: float) -> None:
    settings = load_settings(home=tmp_path / "home", engine_timeout_ms=2000)
    report = seed(settings, SeedOptions(citizens=60, days=2, seed=SEED, end=end))
    assert [i.name for i in report.incidents if not i.alert_id] == []
    start = datetime.fromisoformat(report.window[0])
    assert start.timestamp() <= datetime(2026, 3, 5, 16, 0, tzinfo=UTC).timestamp()  # Friday 00:00 in Taipei
