"""Triage: an analyst acknowledging, closing, reopening or commenting on an alert, recorded with who.

The one path for ``ztcp siem ack`` and the console: the alert's history gets the change and its
actor, marked ``self_review`` when the actor is among the people the alert concerns (read from its
group key and its evidence events), and the SIEM reads that history back as events of kind
``alert`` — so an analyst closing alerts about themselves raises an alert of its own.

``alerts`` is the alert store (:class:`siem_rules.AlertBackend`) or a connection to ``siem.db``
(its SQLite driver). ``events`` is the SIEM store holding the evidence events (``siem.db``; a
connection given as ``alerts`` is both). A replica that holds none of an alert's evidence (it has
not run the pack) still marks self-review: a shared store keeps the people the evidence named.
"""

from __future__ import annotations

import sqlite3

from .alert_backend import AlertBackend
from .alerts import Alert, AlertStore, alert_subjects
from .store import EventStore


def _resolve(alerts: AlertBackend | sqlite3.Connection,
             events: sqlite3.Connection | None) -> tuple[AlertBackend, sqlite3.Connection | None]:
    if isinstance(alerts, sqlite3.Connection):
        return AlertStore(alerts), events if events is not None else alerts
    return alerts, events


def _subjects(store: AlertBackend, events: sqlite3.Connection | None, alert: Alert) -> set[str]:
    rows = [row for _, row in EventStore(events).by_ids(alert.evidence)] if events is not None else []
    return alert_subjects(alert, rows) | store.subjects(alert.alert_id)


def set_status(alerts: AlertBackend | sqlite3.Connection, alert_id: str, status: str, *, actor: str,
               events: sqlite3.Connection | None = None) -> Alert:
    store, evs = _resolve(alerts, events)
    alert = store.get(alert_id)
    return store.set_status(alert_id, status, actor=actor, subjects=_subjects(store, evs, alert))


def comment(alerts: AlertBackend | sqlite3.Connection, alert_id: str, text: str, *, actor: str,
            events: sqlite3.Connection | None = None) -> None:
    store, evs = _resolve(alerts, events)
    store.comment(alert_id, text, actor=actor, subjects=_subjects(store, evs, store.get(alert_id)))
