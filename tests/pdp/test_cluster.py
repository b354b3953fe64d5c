"""Replicas behave as one (issue #12, the decision point's part): two ``Runtime``s on one PostgreSQL
database decide with the signals one process would have computed for the same traffic.

The yardstick is ``pdp.replay``: the shared decision log run through a single in-memory history in
time order. Between requests the test waits until the other replica has applied the observation
(the consistency the design promises is "visible after the writer's commit and one notification"),
and measures that delay. A contrast run on two SQLite homes shows the test would catch replicas
that do not share their history.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import pytest

from contracts.decision import DecisionRequest
from pdp.calendar import BusinessCalendar
from pdp.identity import SubjectIdentity
from pdp.pg_stores import PostgresSignalStore
from pdp.replay import logged, replay
from pdp.signals import HISTORY_SIGNALS, SignalHistory
from pdp.sqlite_stores import SqliteSignalStore
from server.runtime import Runtime
from server.settings import load_settings

_spec = importlib.util.spec_from_file_location("replicas", Path(__file__).parents[1] / "helpers" / "replicas.py")
_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_helpers)  # type: ignore[union-attr]
Clock, citizen, replicas, request, wait_until = (_helpers.Clock, _helpers.citizen, _helpers.replicas, _helpers.request,
                                                 _helpers.wait_until)
TAIPEI, FRANKFURT = _helpers.TAIPEI, _helpers.FRANKFURT

T0 = 1795399200.0  # Monday 2026-11-23 10:00 Taipei
CAL = BusinessCalendar()


# (replica, seconds since the previous step, subject, request options): every history signal is
# made on one replica and must count on the other.
TRAFFIC: list[tuple[int, float, str, dict]] = [
    (0, 0, "emp-1", {}),  # permit: dev-1 and the dataset become known, on A
    (1, 60, "emp-1", {}),  # B: neither first seen
    (0, 30, "emp-1", {"device": {"id": "dev-9"}}),  # A: a new device, permitted
    (1, 30, "emp-1", {"device": {"id": "dev-9"}}),  # B: dev-9 known
    (0, 1800, "emp-1", {"context": {"geo": FRANKFURT}}),  # A: Frankfurt half an hour after Taipei on B
    (1, 20, "emp-1", {"context": {"geo": TAIPEI}}),  # B: and back
    *[(k % 2, 5, "emp-2", {"resource": {"citizen_ref": citizen(k)}}) for k in range(12)],  # breadth, denies
    (0, 10, "emp-3", {"method": "password", "mfa": False, "resource": {"record_id": "r-2"},
                      "context": {"ip": "203.0.113.9", "network_zone": "internet", "channel": "eservice"}}),
    (1, 60, "emp-3", {"resource": {"record_id": "r-2"}}),  # B completes A's step-up within 5 minutes
    (1, 5, "emp-3", {"method": "password", "mfa": False,
                     "context": {"ip": "203.0.113.9", "network_zone": "internet", "channel": "eservice"}}),
    (0, 400, "emp-3", {}),  # A: B's step-up was never completed: one failed step-up (not two)
    (1, 600, "emp-3", {}),
    (0, 1, "emp-2", {"resource": {"citizen_ref": citizen(40)}}),
]


def run_traffic(rts: list[Runtime], clock: Clock, *, shared: bool) -> tuple[list, list[float]]:
    """Drive TRAFFIC; on a shared store wait after each decision until every other replica applied
    it, and return the decisions and those delays."""
    decisions, delays = [], []
    made = [0] * len(rts)
    for replica, dt, sub, options in TRAFFIC:
        clock.now += dt
        opts = dict(options)
        kw = {k: opts.pop(k) for k in ("method", "mfa") if k in opts}
        rt = rts[replica]
        decisions.append(rt.point.decide(DecisionRequest.model_validate(request(rt, clock, sub, **kw, **opts))))
        made[replica] += 1
        if shared:
            for k, other in enumerate(rts):
                if k != replica:
                    expected = sum(made) - made[k]
                    delays.append(wait_until(lambda o=other, e=expected: o.history.applied_remote >= e))
    for rt in rts:
        rt.decision_log.flush()
    return decisions, delays


def test_two_runtimes_on_one_database_decide_like_one_process(tmp_path, pg_url):
    clock = Clock(T0)
    rts = replicas(tmp_path, clock, pg_url)
    try:
        decisions, delays = run_traffic(rts, clock, shared=True)
        entries = rts[1].decision_log.entries(since=0)  # one log: both replicas' decisions
        assert sorted(e["decision_id"] for e in entries) == sorted(d.decision_id for d in decisions)
        by_id = {e["decision_id"]: e for e in entries}
        ordered = [by_id[d.decision_id] for d in decisions]
        assert [logged(e) for e in ordered] == replay(ordered)

        sig = [e["input"]["signals"] for e in ordered]
        assert (sig[1]["device_first_seen"], sig[1]["first_dataset_access"]) == (False, False)  # A's permit
        assert sig[3]["device_first_seen"] is False
        assert sig[4]["impossible_travel"] is True  # Taipei on B, Frankfurt on A 30 min later
        assert sig[17]["distinct_citizens_10m"] == 12 and sig[17]["recent_denies_1h"] == 11
        assert sig[17]["request_rate_1m"] == 12
        assert [d.effect for d in decisions[18:21]] == ["step_up", "permit", "step_up"]
        assert sig[21]["failed_step_ups_1h"] == 1 and sig[22]["failed_step_ups_1h"] == 1
        assert all(rt.history.read_throughs == 0 for rt in rts)  # the tail kept up: no read-through needed
        p50, worst = statistics.median(delays), max(delays)
        print(f"\nA decides -> B applied: p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms over {len(delays)}")
        assert worst < 2.0
    finally:
        for rt in rts:
            rt.close()


def test_the_same_traffic_on_unshared_sqlite_homes_is_not_one_process(tmp_path):
    """The contrast: without ZTCP_DATABASE_URL each replica sees only its own decisions."""
    clock = Clock(T0)
    rts = replicas(tmp_path, clock, None)
    try:
        decisions, _ = run_traffic(rts, clock, shared=False)
        entries = {e["decision_id"]: e for rt in rts for e in rt.decision_log.entries(since=0)}
        ordered = [entries[d.decision_id] for d in decisions]
        differ = sum(a != b for a, b in zip([logged(e) for e in ordered], replay(ordered), strict=True))
        assert differ >= len(TRAFFIC) // 2
    finally:
        for rt in rts:
            rt.close()


# -- the signal history alone, on either driver -------------------------------------------------

def subject(sub: str = "emp-7") -> SubjectIdentity:
    return SubjectIdentity(id=sub, roles=("case_officer",), auth_method="fido2", mfa=True, auth_time=int(T0) - 60,
                           expires_at=int(T0) + 3600)


def req(k: int = 1, device: str = "dev-1", geo: tuple[float, float] | None = (25.03, 121.56)) -> DecisionRequest:
    return DecisionRequest.model_validate({
        "subject_token": "x" * 20, "device": {"id": device, "managed": True, "compliant": True},
        "context": {"network_zone": "internal", "geo": {"lat": geo[0], "lon": geo[1]} if geo else None},
        "resource": {"type": "insured_person", "dataset": "insured_persons", "citizen_ref": citizen(k),
                     "fields": ["name"]},
        "action": "read"})


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):  # noqa: ANN001, ANN201
    if request.param == "sqlite":
        return lambda: SqliteSignalStore(tmp_path / "signals.db", shared=True)
    url = request.getfixturevalue("pg_url")
    return lambda: PostgresSignalStore(url)


def history_of(h: SignalHistory, now: float, k: int = 99) -> dict:
    s = h.compute(subject(), req(k), now, CAL)
    return {name: s[name] for name in HISTORY_SIGNALS}


def test_a_stale_view_reads_the_subject_through_from_the_store(make_store):
    """B's tail has not caught up (max_lag=0: its view always "could be stale"): computing reads the
    subject's newer observations straight from the store, and the tail applying them later does
    not count them twice."""
    clock = Clock(T0)
    a = SignalHistory(store=make_store(), clock=clock)
    b = SignalHistory(store=make_store(), clock=clock, max_lag=0.0)
    try:
        for k in range(5):
            a.observe("emp-7", req(k), "permit", T0 + k)
        assert a.flush()
        first = history_of(b, T0 + 10)  # no waiting for the notification or the poll
        assert first["distinct_citizens_10m"] == 6 and first["request_rate_1m"] == 6
        assert b.read_throughs >= 1
        time.sleep(3 * b._store.poll_interval)  # the tail passes the same rows
        assert history_of(b, T0 + 11) == {**first, "request_rate_1m": 6}
    finally:
        a.close()
        b.close()


def test_late_observations_converge_to_the_one_process_state(make_store):
    """Two replicas deciding for one subject over the same minute without hearing from each other
    in between: each receives the other's observations after its own later ones. Once both are
    applied, both hold the state one process would hold after the same traffic in time order."""
    clock = Clock(T0)
    a = SignalHistory(store=make_store(), clock=clock)
    b = SignalHistory(store=make_store(), clock=clock)
    rows = []
    try:
        for h, parity in ((a, 1), (b, 0)):
            for k in range(parity, 60, 2):
                effect = ("step_up", "permit", "deny")[k % 3]
                row = (T0 + 7 * k, "emp-7", f"dev-{k % 4}", citizen(k % 17), "insured_persons", 25.0 + k / 10,
                       121.5, effect, f"insured_persons/r-{k % 6}/read")
                h.observe_row(row)
                rows.append(row)
        assert a.flush() and b.flush()
        wait_until(lambda: a.applied_remote == 30 and b.applied_remote == 30)
        assert a.late > 0  # b's rows reached a after a's own later ones
        one = SignalHistory(None)
        for row in sorted(rows):
            one.observe_row(row)
        for now in (T0 + 7 * 60, T0 + 900, T0 + 3000, T0 + 4000):
            expected = one.history_signals("emp-7", "dev-2", citizen(3), "insured_persons", (25.03, 121.56), now)
            assert expected["failed_step_ups_1h"] > 0 or now > T0 + 3900
            for h in (a, b):
                assert h.history_signals("emp-7", "dev-2", citizen(3), "insured_persons", (25.03, 121.56),
                                         now) == expected
    finally:
        a.close()
        b.close()


def test_a_database_outage_fails_closed_and_recovers_by_itself_losing_nothing(tmp_path, own_pg_server):
    """The shared database stops: decisions are denied (the log cannot record them, the history
    cannot vouch for its signals) and carry no token; when it is back they resume with no restart,
    and every decision the log accepted — before, during and after — is in it."""
    clock = Clock(T0)
    (rt,) = replicas(tmp_path, clock, own_pg_server.create_database(), n=1)
    decisions = []

    def decide(sub: str = "emp-1") -> object:
        clock.now += 1
        d = rt.point.decide(DecisionRequest.model_validate(request(rt, clock, sub)))
        decisions.append(d)
        return d

    try:
        assert decide().effect == "permit"
        assert rt.decision_log.flush() and rt.history.flush()
        own_pg_server.stop("fast")
        first = decide()  # the log has not tried to write since: it accepts this one, and must keep it
        assert "decision_log_unavailable" not in first.reasons
        wait_until(lambda: not rt.decision_log.healthy or decide().effect == "deny", 15)
        during = [decide() for _ in range(5)]
        time.sleep(rt.history.max_lag + 0.1)  # past the staleness bound: the history cannot vouch either
        during += [decide(), decide("emp-3")]
        for d in during:
            assert d.effect == "deny" and d.token is None
            assert set(d.reasons) <= {"decision_log_unavailable", "signal_history_unavailable"}, d.reasons
        assert "decision_log_unavailable" in during[0].reasons
        assert "signal_history_unavailable" in during[-1].reasons
        ready = rt.history.status()
        assert not ready["ok"] and "tail_error" in ready

        own_pg_server.start()
        wait_until(lambda: decide().effect == "permit", 20)  # no restart: the stores reconnect by themselves
        assert rt.decision_log.flush() and rt.history.flush()
        assert rt.history.status()["ok"] and rt.decision_log.healthy
        acknowledged = {d.decision_id for d in decisions if "decision_log_unavailable" not in d.reasons}
        logged_ids = {e["decision_id"] for e in rt.decision_log.entries(since=0)}
        assert acknowledged <= logged_ids and len(acknowledged) >= 3
        assert rt.history.written == len(decisions)  # every observation, the outage's denies too
    finally:
        rt.close()


# -- wiring ------------------------------------------------------------------------------------------

def test_without_a_database_url_the_stores_stay_embedded_sqlite(tmp_path):
    from pdp.sqlite_stores import SqliteDecisionStore

    rt = Runtime(load_settings(home=tmp_path / "home"))
    try:
        assert isinstance(rt.decision_log.store, SqliteDecisionStore)
        assert isinstance(rt.history._store, SqliteSignalStore) and not rt.history.shared
        assert {"decisions.db", "signals.db"} <= {p.name for p in rt.home.iterdir()}
    finally:
        rt.close()


def test_a_database_url_puts_both_stores_in_postgresql(tmp_path, pg_url):
    from pdp.pg_stores import PostgresDecisionStore

    rt = Runtime(load_settings(home=tmp_path / "home", database_url=pg_url))
    try:
        assert isinstance(rt.decision_log.store, PostgresDecisionStore)
        assert isinstance(rt.history._store, PostgresSignalStore) and rt.history.shared
        assert not (rt.home / "decisions.db").exists() and not (rt.home / "signals.db").exists()
        assert rt.history.status()["ok"]
    finally:
        rt.close()


def test_a_database_url_must_be_postgresql():
    from server.errors import ConfigError

    with pytest.raises(ConfigError, match="ZTCP_DATABASE_URL"):
        load_settings(database_url="mysql://db/ztcp")
    assert load_settings(database_url="postgresql+psycopg://u@h/db").database_url
