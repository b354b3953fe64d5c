"""Triage: an analyst acknowledging, closing, reopening or commenting on an alert, recorded with who.

The one path for ``ztcp siem ack`` and the console: the alert's history gets the change and its
actor, marked ``self_review`` when the actor is among the people the alert concerns (read from its
group key and its evidence events), and the SIEM reads that history back as events of kind
``alert`` — so an analyst closing alerts about themselves raises an alert of its own.
"""

from __future__ import annotations

import sqlite3

from .alerts import Alert, AlertStore, alert_subjects
from .store import EventStore


def _subjects(conn: sqlite3.Connection, alert: Alert) -> set[str]:
    return alert_subjects(alert, [row for _, row in EventStore(conn).by_ids(alert.evidence)])


def set_status(conn: sqlite3.Connection, alert_id: str, status: str, *, actor: str) -> Alert:
    store = AlertStore(conn)
    alert = store.get(alert_id)
    return store.set_status(alert_id, status, actor=actor, subjects=_subjects(conn, alert))


def comment(conn: sqlite3.Connection, alert_id: str, text: str, *, actor: str) -> None:
    store = AlertStore(conn)
    store.comment(alert_id, text, actor=actor, subjects=_subjects(conn, store.get(alert_id)))
