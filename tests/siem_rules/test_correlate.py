"""Sliding windows: boundaries, episodes, incremental equivalence, agreement with pySigma's plan."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sigma.backends.sqlite import sqliteBackend
from sigma.backends.sqlite.runtime import execute_plan
from sigma.collection import SigmaCollection

from siem_rules.correlate import Row, evaluate


def rows(times: list[float], group: str = "a", slot: int = 0, values: list | None = None) -> list[Row]:
    return [Row(t, slot, f"{slot}-{group}-{i}", (group,), values[i] if values else None) for i, t in enumerate(times)]


@pytest.mark.parametrize(("last", "fires"), [(3600.0, True), (3599.0, True), (3600.5, False), (3601.0, False)])
def test_event_count_window_boundary(last: float, fires: bool) -> None:
    evs = rows([0.0, 1800.0, last])
    hits = evaluate("event_count", 3600, 1, "gte", 3, evs, ["actor"], float("-inf"))
    assert bool(hits) is fires


def test_value_count_counts_distinct_case_insensitively() -> None:
    evs = rows([0, 1, 2, 3], values=["cr_A", "CR_a", "cr_B", "cr_b"])
    assert not evaluate("value_count", 60, 1, "gte", 3, evs, ["actor"], float("-inf"))
    evs = rows([0, 1, 2], values=["cr_A", "cr_B", "cr_C"])
    (hit,) = evaluate("value_count", 60, 1, "gte", 3, evs, ["actor"], float("-inf"))
    assert hit.metric == 3 and len(hit.evidence) == 3


def test_overlapping_windows_are_one_episode_and_gaps_split() -> None:
    evs = rows([0, 10, 20, 30, 40] + [1000, 1010, 1020])
    hits = evaluate("event_count", 25, 1, "gte", 3, evs, ["actor"], float("-inf"))
    assert [len(h.evidence) for h in hits] == [5, 3]


def test_temporal_ordered_requires_order_and_window() -> None:
    deny, permit = 0, 1
    ordered = rows([0.0], slot=deny) + rows([600.0], slot=permit)
    assert evaluate("temporal_ordered", 600, 2, None, None, ordered, ["s"], float("-inf"))
    late = rows([0.0], slot=deny) + rows([600.5], slot=permit)
    assert not evaluate("temporal_ordered", 600, 2, None, None, late, ["s"], float("-inf"))
    reversed_ = rows([10.0], slot=deny) + rows([0.0], slot=permit)
    assert not evaluate("temporal_ordered", 600, 2, None, None, reversed_, ["s"], float("-inf"))


def test_groups_are_separate_and_missing_group_ignored() -> None:
    evs = rows([0, 1], group="a") + rows([2], group="b") + [Row(3, 0, "x", (None,))]
    assert not evaluate("event_count", 60, 1, "gte", 3, evs, ["actor"], float("-inf"))


def _stream():
    return st.lists(
        st.tuples(
            st.integers(0, 5000),
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 1),
            st.sampled_from(["v1", "v2", "v3", "v4"]),
        ),
        min_size=1,
        max_size=60,
    )


@settings(max_examples=150, deadline=None)
@given(_stream(), st.sampled_from(["event_count", "value_count", "temporal", "temporal_ordered"]), st.integers(0, 5000))
def test_anchoring_at_new_events_finds_every_window_ending_there(data, ctype, cut) -> None:
    """Windows anchored at ts >= cut, computed from rows with ts >= cut - span only (the lookback
    an incremental run fetches), are exactly the full evaluation's windows anchored there."""
    span = 300
    slots = 2 if ctype.startswith("temporal") else 1
    evs = [Row(float(t), s % slots, f"e{i}", (g,), v) for i, (t, g, s, v) in enumerate(data)]
    cond = (None, None) if ctype.startswith("temporal") else ("gte", 2.0)

    def windows(hits):
        return sorted((h.group["k"], tuple(h.evidence)) for h in hits)

    full = evaluate(ctype, span, slots, *cond, evs, ["k"], float("-inf"))
    part = evaluate(ctype, span, slots, *cond, [r for r in evs if r.ts >= cut - span], ["k"], float(cut))
    # every incremental episode's evidence is covered by one full-run episode of the same group
    full_sets = [(h.group["k"], set(h.evidence)) for h in full]
    for h in part:
        assert any(g == h.group["k"] and set(h.evidence) <= ev for g, ev in full_sets), windows(part)
    # and every full-run episode that has a qualifying window ending at or after cut is found
    for h in full:
        if h.window_end >= cut:
            assert any(p.group["k"] == h.group["k"] and set(p.evidence) & set(h.evidence) for p in part)


RULES = """
title: base
name: base
id: 11111111-1111-1111-1111-111111111111
logsource: {product: ztcp, service: provenance}
detection:
  sel: {type: pii.read}
  condition: sel
---
title: corr
id: 22222222-2222-2222-2222-222222222222
correlation:
  type: %s
  rules: [base]
  group-by: [actor]
  timespan: 10m
  condition: %s
"""


@pytest.mark.parametrize(
    ("ctype", "cond"), [("event_count", "{gte: 3}"), ("value_count", "{gte: 3, field: citizen_ref}")]
)
def test_agrees_with_pysigma_sqlite_plan_on_which_groups_fire(ctype: str, cond: str) -> None:
    """pySigma-backend-sqlite's own correlation SQL (a sliding window) and our evaluator agree."""
    import random

    rng = random.Random(4)
    data = [(rng.uniform(0, 7200), rng.choice("abcdef"), f"cr_{rng.randint(0, 5)}") for _ in range(200)]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE logs (timestamp TEXT, type TEXT, actor TEXT, citizen_ref TEXT)")
    conn.executemany(
        "INSERT INTO logs VALUES (datetime(?, 'unixepoch'), 'pii.read', ?, ?)", [(int(t), a, c) for t, a, c in data]
    )
    backend = sqliteBackend(table="logs")
    coll = SigmaCollection.from_yaml(RULES % (ctype, cond))
    backend.convert(coll, "zircolite")
    plan = json.loads(backend.convert(SigmaCollection.from_yaml(RULES % (ctype, cond)), "zircolite"))[0]
    alerts, _ = execute_plan(conn, plan["correlation_plan"], include_events=False)
    theirs = {a["group_keys"]["actor"] for a in alerts}
    evs = [Row(int(t), 0, f"e{i}", (actor,), cr) for i, (t, actor, cr) in enumerate(data)]
    ours = {h.group["actor"] for h in evaluate(ctype, 600, 1, "gte", 3, evs, ["actor"], float("-inf"))}
    assert ours == theirs and ours
