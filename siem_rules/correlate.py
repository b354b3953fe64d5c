"""Sliding-window evaluation of Sigma correlation rules, driven only by the parsed rule.

Why not the backend's correlation SQL: pySigma-backend-sqlite 2.0 does generate true sliding
windows (``RANGE BETWEEN span PRECEDING``), but its plan first materialises *every* row of the
table as a JSON payload (no predicate push-down, no way to restrict to new events), measures
``value_count`` / temporal windows with a correlated subquery per event (quadratic per group),
and reports one alert per qualifying anchor event. The Elasticsearch ES|QL backend buckets time
(``date_trunc``) instead of sliding. So the engine takes the detections' compiled predicates
from pySigma, fetches only matching rows in the time range a run needs, and slides the window
here: O(n) per group for event_count / value_count / value_sum / temporal, and a backward scan
per anchor for temporal_ordered.

Window semantics: an event at ``t`` and one at ``t - timespan`` are in the same window
(inclusive); one at ``t - timespan - ε`` is not. Consecutive qualifying windows of the same group
whose events overlap in time are one episode (one alert).
"""

from __future__ import annotations

import contextlib
import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .alerts import Hit

_OPS = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
    "eq": operator.eq,
    "neq": operator.ne,
}


@dataclass(slots=True)
class Row:
    ts: float
    slot: int
    event_id: str
    group: tuple
    value: object = None


def _key(v: object) -> object:
    return v.lower() if isinstance(v, str) else v


def evaluate(
    ctype: str,
    span: float,
    slots: int,
    op: str | None,
    count: float | None,
    rows: Iterable[Row],
    group_fields: list[str],
    anchor_from: float,
) -> list[Hit]:
    """Episodes of qualifying windows anchored at events with ``ts >= anchor_from``."""
    groups: dict[tuple, list[Row]] = {}
    display: dict[tuple, tuple] = {}
    for r in rows:
        if any(g is None for g in r.group):
            continue  # Sigma: an event without the group-by field takes no part
        if ctype in ("value_count", "value_sum") and r.value is None:
            continue
        k = tuple(_key(g) for g in r.group)
        groups.setdefault(k, []).append(r)
        display.setdefault(k, r.group)
    if op is None:  # temporal without condition: all referenced rules
        op, count = "gte", float(slots)
    cmp = _OPS[op]
    hits: list[Hit] = []
    for k, rs in groups.items():
        rs.sort(key=lambda r: (r.ts, r.slot, r.event_id))
        group = dict(zip(group_fields, display[k], strict=True))
        if ctype == "temporal_ordered":
            hits.extend(_ordered(rs, span, slots, anchor_from, group))
        else:
            hits.extend(_sliding(ctype, rs, span, slots, cmp, count, anchor_from, group))
    return hits


def _sliding(
    ctype: str, rs: list[Row], span: float, slots: int, cmp, threshold, anchor_from: float, group: dict
) -> list[Hit]:
    hits: list[Hit] = []
    i = 0
    values: Counter = Counter()
    slot_n: Counter = Counter()
    total = 0.0
    episode: Hit | None = None
    upto = -1  # highest row index already in the episode's evidence

    def add(r: Row, sign: int) -> None:
        nonlocal total
        if ctype == "value_count":
            v = _key(r.value)
            values[v] += sign
            if values[v] == 0:
                del values[v]
        elif ctype == "value_sum":
            with contextlib.suppress(TypeError, ValueError):  # non-numeric values do not count
                total += sign * float(r.value)  # type: ignore[arg-type]  # value is any SQLite cell (object)
        elif ctype == "temporal":
            slot_n[r.slot] += sign
            if slot_n[r.slot] == 0:
                del slot_n[r.slot]

    for j, r in enumerate(rs):
        add(r, 1)
        while rs[i].ts < r.ts - span:
            add(rs[i], -1)
            i += 1
        if r.ts < anchor_from:
            continue
        if ctype == "event_count":
            metric = float(len({x.event_id for x in rs[i : j + 1]}) if slots > 1 else j - i + 1)
        elif ctype == "value_count":
            metric = float(len(values))
        elif ctype == "value_sum":
            metric = total
        else:  # temporal
            metric = float(len(slot_n))
        if not cmp(metric, threshold):
            continue
        if episode is not None and rs[i].ts <= rs[upto].ts:
            start = max(i, upto + 1)
            episode.evidence.extend((x.ts, x.event_id) for x in rs[start : j + 1])
            episode.window_end = r.ts
            episode.metric = max(episode.metric or 0.0, metric)
        else:
            episode = Hit(
                group=group,
                window_start=r.ts - span,
                window_end=r.ts,
                evidence=[(x.ts, x.event_id) for x in rs[i : j + 1]],
                metric=metric,
            )
            hits.append(episode)
        upto = j
    for h in hits:
        h.evidence = sorted(set(h.evidence))
    return hits


def _ordered(rs: list[Row], span: float, slots: int, anchor_from: float, group: dict) -> list[Hit]:
    hits: list[Hit] = []
    episode: Hit | None = None
    ep_last = 0.0
    i = 0
    last = slots - 1
    for j, r in enumerate(rs):
        while rs[i].ts < r.ts - span:
            i += 1
        if r.slot != last or r.ts < anchor_from:
            continue
        chosen = [r]
        cur = j
        for s in range(last - 1, -1, -1):
            p = cur - 1
            while p >= i and rs[p].slot != s:
                p -= 1
            if p < i:
                break
            chosen.append(rs[p])
            cur = p
        else:
            evidence = [(x.ts, x.event_id) for x in reversed(chosen)]
            first = evidence[0][0]
            if episode is not None and first <= ep_last:
                episode.evidence.extend(evidence)
                episode.window_end = r.ts
                ep_last = r.ts
            else:
                ep_last = r.ts
                episode = Hit(
                    group=group, window_start=r.ts - span, window_end=r.ts, evidence=evidence, metric=float(slots)
                )
                hits.append(episode)
    for h in hits:
        h.evidence = sorted(set(h.evidence))
    return hits
