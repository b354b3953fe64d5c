"""One process's view of the same traffic: the yardstick for replicas that should behave as one.

``replay(entries)`` runs decision-log entries (from any replica, any driver) through a single
in-memory :class:`pdp.signals.SignalHistory` in decision-time order, exactly as one PDP would have
seen them (compute at the decision's instant, then observe its effect), and returns the history
signals each decision would have had. ``logged(entry)`` is what the deciding replica actually
computed. Replicas behave as one when, for every entry, the two are equal::

    entries = log.entries(since=0)
    assert [logged(e) for e in entries] == replay(entries)

Only the history signals (``pdp.signals.HISTORY_SIGNALS``) are compared: the others come from the
token and the request alone. What the log does not hold cannot be replayed: a decision refused
because the log itself was down (``decision_log_unavailable``) is observed by its PDP but never
logged, and an entry logged with the minimal input (an unexpected internal error) has no device
or location; such traffic is outside what this comparison can judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pdp.signals import HISTORY_SIGNALS, Observation, SignalHistory, TravelRule


def observation(entry: Mapping[str, Any]) -> Observation | None:
    """The observation a PDP made of a logged decision (``SignalHistory.observe`` of its request);
    None when the decision was refused before its subject was known (no history involved)."""
    inp = entry.get("input") or {}
    subject = (inp.get("subject") or {}).get("id")
    if subject is None:
        return None
    resource = inp.get("resource") or {}
    geo = (inp.get("context") or {}).get("geo") or None
    key = f"{resource.get('dataset')}/{resource.get('record_id') or resource.get('citizen_ref') or '*'}/" \
          f"{inp.get('action')}"
    return (float(entry["ts"]), str(subject), (inp.get("device") or {}).get("id"),
            resource.get("citizen_ref"), resource.get("dataset"), geo.get("lat") if geo else None,
            geo.get("lon") if geo else None, entry["result"]["effect"], key)


def logged(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The history signals the deciding PDP logged (None: the entry carries no signals)."""
    signals = (entry.get("input") or {}).get("signals")
    return {name: signals[name] for name in HISTORY_SIGNALS} if signals else None


def replay(entries: Iterable[Mapping[str, Any]], *, travel: TravelRule | None = None) -> list[dict[str, Any] | None]:
    """The history signals of each entry as one process would have computed them, in the order
    ``entries`` were given (replayed in ``ts`` order; ties keep the given order). None for entries
    that carry no signals (they are still observed)."""
    items = list(entries)
    history = SignalHistory(None, travel=travel)
    out: list[dict[str, Any] | None] = [None] * len(items)
    for index in sorted(range(len(items)), key=lambda i: float(items[i]["ts"])):
        entry = items[index]
        row = observation(entry)
        if row is None:
            continue  # refused before the subject was known: no history involved
        ts, subject, device, citizen, dataset, lat, lon, _, _ = row
        if logged(entry) is not None:
            geo = (lat, lon) if lat is not None and lon is not None else None
            out[index] = history.history_signals(subject, device, citizen, dataset, geo, ts)
        history.observe_row(row)
    return out
