"""SIEM alerts across `ztcp serve` replicas on one PostgreSQL (ZTCP_DATABASE_URL), as real processes.

Decisions that trigger rules are written to the shared decision log; the scheduler leader raises the
alerts into the shared alert store; an analyst on another replica closes one; the leader is killed
with kill -9 mid-way (one break-glass series spans the kill); the standby takes over with a siem.db
of its own. Compared with one process that saw the same decisions: every alert is there once, with
the same evidence, and the closed one is still closed.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

from demo.siem_week import Traffic
from pdp.pg_stores import PostgresDecisionStore
from server.settings import load_settings
from server.siem import siem_pack
from siem_rules import Engine, connect
from siem_rules.pg_alerts import PostgresAlertStore

_spec = importlib.util.spec_from_file_location("serve_replicas", Path(__file__).parent / "test_serve_replicas.py")
_serve_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_serve_helpers)  # type: ignore[union-attr]
_env, _serve, _ready, _checks, _free_port, _stop = (getattr(_serve_helpers, n) for n in
                                                    ("_env", "_serve", "_ready", "_checks", "_free_port", "_stop"))

PLANTED = ("self_record_read", "disclosure_to_unapproved_recipient", "break_glass_repeated",
           "deny_then_permit_probing", "break_glass_without_justification", "risky_access_special_category")


def _shape(alerts: list) -> set[tuple]:
    return {(a.rule_name, json.dumps(a.group_keys, sort_keys=True), a.first_seen, a.event_count, tuple(a.evidence),
             a.status) for a in alerts if a.rule_name in PLANTED}


def _wait(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.3)


def test_alerts_survive_a_leader_kill_9_once_each(tmp_path, pg_dsn) -> None:  # noqa: ANN001
    inc = Traffic(seed=5, employees=3).incidents()
    repeat = inc["break_glass_repeat"][1]
    first = [*inc["self_record"][1], *inc["disclosure"][1], *inc["probe"][1], *repeat[:2]]
    second = [*repeat[2:], *inc["break_glass"][1], *inc["takeover"][1]]
    assert all(kind == "decision" for kind, _ in first + second)

    # The one-process reference, with the pack a fresh home runs.
    pack = siem_pack(load_settings(home=tmp_path / "ref-home"))
    ref = Engine(connect(tmp_path / "ref.db"), pack)
    ref.store.ingest(first)
    ref.run()
    self_record = pack.find("self_record_read").id
    for a in ref.alerts.list(rule_id=self_record):
        ref.alerts.set_status(a.alert_id, "closed", actor="soc-1")
    ref.store.ingest(second)
    ref.run()
    expected = _shape(ref.alerts.list())
    assert {e[0] for e in expected} == set(PLANTED)
    # What the first decisions alone raise (the break-glass series is not complete yet).
    expected_first = {e[:2] for e in expected
                      if e[0] in ("self_record_read", "disclosure_to_unapproved_recipient", "deny_then_permit_probing")}

    log = PostgresDecisionStore(pg_dsn)
    log.write([e for _, e in first])
    alerts = PostgresAlertStore(pg_dsn)  # what any replica's console reads
    ports = [_free_port(), _free_port()]
    procs = [_serve(_env(tmp_path / "a", ports[0], pg_dsn))]
    try:
        _ready(ports[0], procs[0])
        procs.append(_serve(_env(tmp_path / "b", ports[1], pg_dsn)))
        _ready(ports[1], procs[1])
        _wait(lambda: {e[:2] for e in _shape(alerts.list())} >= expected_first)
        roles = [_checks(p)["cluster"]["roles"]["scheduler"] for p in ports]
        leader = roles.index("leader")
        standby = 1 - leader
        # An analyst (on any replica) closes the self-record alert.
        (mine,) = alerts.list(rule_id=self_record)
        alerts.set_status(mine.alert_id, "closed", actor="soc-1")
        before = {a.alert_id for a in alerts.list()}

        procs[leader].kill()  # kill -9
        procs[leader].communicate()
        log.write([e for _, e in second])
        _wait(lambda: _checks(ports[standby])["cluster"]["roles"]["scheduler"] == "leader", 15)
        _wait(lambda: {e[0] for e in _shape(alerts.list())} == set(PLANTED))
        runs = _checks(ports[standby])["siem"]["runs"]
        _wait(lambda: _checks(ports[standby])["siem"]["runs"] >= runs + 2, 15)  # more ticks: still nothing new
        after = alerts.list()
        assert before <= {a.alert_id for a in after}  # nothing lost
        assert _shape(after) == expected  # each once, same evidence, the closed one still closed
        brk, checked = alerts.verify_history()
        assert brk is None and checked >= len(after) + 1  # a creation row per alert, and the close
    finally:
        for proc in procs:
            _stop(proc)
        alerts.close()
        log.close()
