"""The background scheduler `ztcp serve` starts: runs the pack periodically, stops cleanly."""

from __future__ import annotations

import time
from pathlib import Path

from cli.cmd_siem import make_engine, make_scheduler
from cli.settings import load_settings
from siem_rules import JsonlSource
from siem_rules.simulate import Traffic, to_jsonl


def test_scheduler_ingests_runs_and_stops(tmp_path: Path) -> None:
    t = Traffic(seed=5, employees=3)
    f = tmp_path / "live.jsonl"
    f.write_text("", encoding="utf-8")
    sched = make_scheduler(load_settings(), interval=0.2, sources=[JsonlSource(f)])
    sched.start()
    try:
        f.write_text("".join(to_jsonl(t.incidents()["emergency"][1])), encoding="utf-8")
        deadline = time.time() + 20
        while time.time() < deadline:
            engine = make_engine(load_settings())
            try:
                found = engine.alerts.list()
            finally:
                engine.conn.close()
            if found:
                break
            time.sleep(0.2)
        assert [a.rule_name for a in found] == ["emergency_policy_publish"]
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
