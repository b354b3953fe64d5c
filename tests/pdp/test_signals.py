"""Stateful signals: impossible travel, breadth, new device, rates, and persistence across restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.decision import DecisionRequest
from pdp.calendar import BusinessCalendar
from pdp.identity import SubjectIdentity
from pdp.signals import SignalHistory, haversine_km

T0 = 1795399200.0  # Monday 2026-11-23 10:00 Taipei
CAL = BusinessCalendar(holidays=frozenset({datetime(2026, 12, 25).date()}))


def subject(**kw) -> SubjectIdentity:
    base = {"id": "emp-7", "roles": ("case_officer",), "auth_method": "fido2", "mfa": True,
            "auth_time": int(T0) - 300, "expires_at": int(T0) + 900}
    base.update(kw)
    return SubjectIdentity(**base)


def req(citizen: int = 1, device: str = "dev-1", geo=(25.03, 121.56), dataset: str = "insured_persons"):
    ref = "cr_" + format(citizen, "b").replace("0", "A").replace("1", "B").rjust(52, "C")
    return DecisionRequest.model_validate({
        "subject_token": "x" * 20,
        "device": {"id": device, "managed": True, "compliant": True},
        "context": {"network_zone": "internal",
                    "geo": {"lat": geo[0], "lon": geo[1]} if geo else None},
        "resource": {"type": "insured_person", "dataset": dataset, "citizen_ref": ref, "fields": ["name"]},
        "action": "read",
    })


def test_haversine_taipei_kaohsiung():
    assert haversine_km(25.0330, 121.5654, 22.6273, 120.3014) == pytest.approx(297, abs=5)


def test_impossible_travel_taipei_then_frankfurt_in_an_hour():
    h = SignalHistory()
    h.observe("emp-7", req(geo=(25.03, 121.56)), "permit", T0)
    s = h.compute(subject(), req(geo=(50.11, 8.68)), T0 + 3600, CAL)
    assert s["impossible_travel"] is True and s["travel_speed_kmh"] > 9000
    # the same trip over a day is plausible
    s = h.compute(subject(), req(geo=(50.11, 8.68)), T0 + 86400, CAL)
    assert s["impossible_travel"] is False


def test_short_hops_are_not_impossible_travel():
    h = SignalHistory()
    h.observe("emp-7", req(geo=(25.03, 121.56)), "permit", T0)
    s = h.compute(subject(), req(geo=(25.05, 121.60)), T0 + 5, CAL)  # a few km in 5 s: geo noise
    assert s["impossible_travel"] is False


def test_breadth_counts_distinct_citizens_in_sliding_windows():
    h = SignalHistory()
    for i in range(30):
        h.observe("emp-7", req(citizen=i), "permit", T0 + i)
    h.observe("emp-7", req(citizen=3), "permit", T0 + 31)  # a repeat is not breadth
    s = h.compute(subject(), req(citizen=99), T0 + 60, CAL)
    assert s["distinct_citizens_10m"] == 31 and s["distinct_citizens_1h"] == 31
    assert s["request_rate_1m"] == 32
    s = h.compute(subject(), req(citizen=99), T0 + 601 + 31, CAL)  # all older than 10 minutes
    assert s["distinct_citizens_10m"] == 1 and s["distinct_citizens_1h"] == 31
    s = h.compute(subject(), req(citizen=99), T0 + 3700, CAL)
    assert s["distinct_citizens_1h"] == 1


def test_new_device_and_first_dataset():
    h = SignalHistory()
    s = h.compute(subject(), req(device="dev-1"), T0, CAL)
    assert s["device_first_seen"] and s["first_dataset_access"]
    h.observe("emp-7", req(device="dev-1"), "permit", T0)
    s = h.compute(subject(), req(device="dev-1"), T0 + 1, CAL)
    assert not s["device_first_seen"] and not s["first_dataset_access"]
    assert h.compute(subject(), req(device="dev-2"), T0 + 2, CAL)["device_first_seen"]
    # another subject on the same device: new for them
    assert h.compute(subject(id="emp-8"), req(device="dev-1"), T0 + 3, CAL)["device_first_seen"]


def test_denies_and_failed_step_ups():
    h = SignalHistory()
    h.observe("emp-7", req(citizen=1), "deny", T0)
    h.observe("emp-7", req(citizen=2), "step_up", T0 + 1)
    h.observe("emp-7", req(citizen=3), "step_up", T0 + 2)
    h.observe("emp-7", req(citizen=3), "permit", T0 + 30)  # completed step-up
    s = h.compute(subject(), req(), T0 + 400, CAL)
    assert s["recent_denies_1h"] == 1
    assert s["failed_step_ups_1h"] == 1


def test_off_hours_holidays_and_makeup_days():
    h = SignalHistory()
    assert h.compute(subject(), req(), T0, CAL)["off_hours"] is False
    assert h.compute(subject(), req(), T0 - 8 * 3600, CAL)["off_hours"] is True  # 02:00
    saturday = T0 + 5 * 86400
    assert h.compute(subject(), req(), saturday, CAL)["holiday"] is True
    xmas = datetime(2026, 12, 25, 2, tzinfo=UTC).timestamp()  # 10:00 Taipei on a Friday holiday
    assert h.compute(subject(), req(), xmas, CAL)["off_hours"] is True
    makeup = BusinessCalendar(makeup_workdays=frozenset({datetime(2026, 11, 28).date()}))
    assert h.compute(subject(), req(), saturday, makeup)["off_hours"] is False


def test_self_record_only_with_matching_citizen_ref():
    h = SignalHistory()
    own = req(citizen=5).resource.citizen_ref
    assert h.compute(subject(citizen_ref=own), req(citizen=5), T0, CAL)["self_record"] is True
    assert h.compute(subject(citizen_ref=own), req(citizen=6), T0, CAL)["self_record"] is False
    assert h.compute(subject(), req(citizen=5), T0, CAL)["self_record"] is False


def test_history_survives_restart(tmp_path):
    import time

    now = time.time()
    path = tmp_path / "signals.db"
    h = SignalHistory(path, flush_interval=0.05)
    h.observe("emp-7", req(device="dev-1", geo=(25.03, 121.56)), "permit", now)
    for i in range(5):
        h.observe("emp-7", req(citizen=i), "permit", now + i)
    h.close()
    h2 = SignalHistory(path)
    try:
        s = h2.compute(subject(), req(device="dev-1", citizen=50, geo=(50.11, 8.68)), now + 60, CAL)
        assert s["device_first_seen"] is False
        assert s["distinct_citizens_1h"] == 6
        assert s["impossible_travel"] is True
    finally:
        h2.close()


def test_restart_reloads_history_by_the_pdps_clock_not_the_wall_clock(tmp_path):
    """A simulated week (the demo) runs days behind the wall clock: its last hour must still be
    reloaded after a restart and not pruned from disk as if it were old."""
    past = T0 - 7 * 86400  # a week before T0: behind the wall clock
    path = tmp_path / "signals.db"
    h = SignalHistory(path, flush_interval=0.05, clock=lambda: past)
    for i in range(4):
        h.observe("emp-7", req(citizen=i), "permit", past - 600 + i)
    h.close()
    h2 = SignalHistory(path, clock=lambda: past + 60)
    try:
        s = h2.compute(subject(), req(citizen=99), past + 60, CAL)
        assert s["distinct_citizens_1h"] == 5  # the four before the restart, plus this one
    finally:
        h2.close()
    wall = SignalHistory(path)  # judged by today's wall clock, the simulated hour is long gone
    try:
        assert wall.compute(subject(), req(citizen=99), past + 60, CAL)["distinct_citizens_1h"] == 1
    finally:
        wall.close()


def test_bad_calendar_is_a_configuration_error():
    from pdp.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        BusinessCalendar.from_config({"timezone": "Mars/Olympus"})
    with pytest.raises(ConfigurationError):
        BusinessCalendar.from_config({"holidays": ["not-a-date"]})


@pytest.mark.parametrize("seed", range(12))
def test_observations_in_any_order_leave_the_state_of_time_order(seed):
    """Replicas apply each other's observations late and in any interleaving: whatever the order (and
    whatever signals were computed meanwhile), once every observation is in, the history answers
    exactly as one that saw them in time order."""
    import random

    rng = random.Random(seed)
    times = sorted(rng.sample(range(0, 7200, 3), 120))
    rows = [(T0 + t, "emp-7", f"dev-{rng.randrange(4)}", f"cr_{rng.randrange(15)}", rng.choice(["a", "b"]),
             25.0 + rng.random(), 121.0 + rng.random(), rng.choice(["permit", "permit", "step_up", "deny"]),
             f"a/r-{rng.randrange(5)}/read") for t in times]
    in_order, shuffled = SignalHistory(), SignalHistory()
    for row in rows:
        in_order.observe_row(row)
    mixed = rows[:]
    rng.shuffle(mixed)
    for i, row in enumerate(mixed):
        shuffled.observe_row(row)
        if i % 17 == 0:  # a decision computed in between ages the state at its own instant
            shuffled.history_signals("emp-7", "dev-1", "cr_1", "a", (25.0, 121.0), row[0])
    assert shuffled.late > 0
    for probe in (7200, 7300, 7600, 9000, 11000):
        args = ("emp-7", "dev-9", "cr_99", "c", (25.5, 121.5), T0 + probe)
        assert shuffled.history_signals(*args) == in_order.history_signals(*args), probe
