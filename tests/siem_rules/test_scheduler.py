"""The background scheduler `ztcp serve` starts: runs the pack periodically, stops cleanly."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from demo.siem_week import WEEK_START, Traffic, to_jsonl
from server.settings import load_settings
from server.siem import make_engine, make_scheduler
from siem_rules import JsonlSource
from siem_rules.fixtures import synthetic_citizen_ref


def _alerts_when(done, timeout: float = 20.0) -> tuple[list[str], int]:  # noqa: ANN001
    """Poll the SIEM store until ``done(rule_names, key_events)`` holds (ingest and the rule run are
    separate steps of one scheduler tick, so a test waits for the outcome it needs)."""
    deadline = time.time() + timeout
    while True:
        engine = make_engine(load_settings())
        try:
            names, keys = [a.rule_name for a in engine.alerts.list()], engine.store.count("key")
        finally:
            engine.conn.close()
        if done(names, keys) or time.time() > deadline:
            return names, keys
        time.sleep(0.2)


def test_scheduler_ingests_runs_and_stops(tmp_path: Path) -> None:
    t = Traffic(seed=5, employees=3)
    f = tmp_path / "live.jsonl"
    f.write_text("", encoding="utf-8")
    sched = make_scheduler(load_settings(), interval=0.2, sources=[JsonlSource(f)])
    sched.start()
    try:
        f.write_text("".join(to_jsonl(t.incidents()["emergency"][1])), encoding="utf-8")
        found, _ = _alerts_when(lambda names, _: bool(names))
        assert found == ["emergency_policy_publish"]
        # The alert is committed inside the run; the run is counted as it returns: wait for that too.
        deadline = time.time() + 10
        while sched.runs < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert sched.running and sched.runs >= 1 and sched.last_error is None
    finally:
        sched.stop()
    assert not sched.running
    runs = sched.runs
    time.sleep(0.5)
    assert sched.runs == runs


def test_scheduler_survives_a_bad_event_and_reports_it(tmp_path: Path) -> None:
    f = tmp_path / "live.jsonl"
    f.write_text('{"kind": "policy", "event_id": "p1"}\n', encoding="utf-8")
    sched = make_scheduler(load_settings(), interval=0.1, sources=[JsonlSource(f)])
    sched.start()
    try:
        deadline = time.time() + 10
        while sched.last_error is None and time.time() < deadline:
            time.sleep(0.05)
        assert sched.last_error and "live.jsonl:1" in sched.last_error
        assert sched.running
    finally:
        sched.stop()


def test_a_store_created_after_start_up_is_read_by_the_running_scheduler(ztcp_home: Path) -> None:
    """`ztcp serve` starts before any key has been used: the key audit it creates later (here, a
    custodian's bulk decrypt) must still reach the SIEM without a restart."""
    import keymgmt
    from server.siem import LiveSources

    settings = load_settings()
    sources = LiveSources(settings)
    assert "key-audit" not in {s.name for s in sources()}
    sched = make_scheduler(settings, interval=0.1)
    sched.start()
    try:
        time.sleep(0.3)  # a few runs with no key audit at all
        audit = keymgmt.KeyAuditLog(keymgmt.default_audit_path(ztcp_home))
        for _ in range(3):
            audit.record(type="key.bulk_decrypt", actor="emp-key-9", key_name="data-kek", dataset="claims",
                         count=40_000, reason="verify")
        names, counted = _alerts_when(lambda names, keys: keys >= 3 and "key_decrypt_spike" in names)
        assert counted == 3, "the key audit created after start-up was never ingested"
        assert "key_decrypt_spike" in names
    finally:
        sched.stop()
    assert "key-audit" in {s.name for s in sources()}


def test_an_edited_lists_file_applies_without_a_restart(ztcp_home: Path, tmp_path: Path) -> None:
    """`ztcp demo seed` (or an officer) writes siem.yml while `ztcp serve` runs: the next scheduled run
    must use the new protected-citizen list, not the one loaded at start-up."""
    t = Traffic(seed=5, employees=3)
    f = tmp_path / "live.jsonl"
    f.write_text("", encoding="utf-8")
    sched = make_scheduler(load_settings(), interval=0.1, sources=[JsonlSource(f)])
    sched.start()
    try:
        time.sleep(0.4)  # runs with no lists file at all
        vip = synthetic_citizen_ref("vip-42")
        (ztcp_home / "siem.yml").write_text(f"protected_citizens: [{vip}]\n", encoding="utf-8")
        time.sleep(0.4)
        read = t.prov(WEEK_START + timedelta(hours=10), "emp-0002", vip, event_id="vip-read-1")
        f.write_text("".join(to_jsonl([read])), encoding="utf-8")
        found, _ = _alerts_when(lambda names, _: bool(names))
        assert found == ["protected_record_access"]
    finally:
        sched.stop()
