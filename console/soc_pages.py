"""SOC analyst pages: alerts (filter by status, severity, rule), one alert with its evidence
events, and acknowledge / close / reopen — the same store operation as ``ztcp siem ack``.

Alerts are read through the alert store (``Runtime.alerts()``: PostgreSQL shared by every replica
with ``ZTCP_DATABASE_URL``, else ``siem.db``); evidence events from this replica's ``siem.db``. An
alert store that does not answer is a 503 (``AlertStoreUnavailable``, see console/app.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from console import guard
from console.web import PREFIX, Console, PageError
from siem_rules import AlertNotFound, EventStore, SiemError, connect, triage
from siem_rules.alerts import STATUSES

LEVELS = ("informational", "low", "medium", "high", "critical")
MAX_LISTED = 500  # most severe and most recent first; filters narrow the rest
EVIDENCE_SHOWN = 200
# Columns worth showing for an evidence event, when the kind has them (references only: the SIEM
# store never holds personal values).
EVIDENCE_COLUMNS = ("type", "effect", "actor", "subject_id", "org_unit", "action", "dataset", "record_id",
                    "citizen_ref", "fields", "purpose_code", "case_id", "recipient", "reasons", "risk_score",
                    "network_zone", "ip", "via_ip", "geo_country", "device_id", "key_name", "key_version", "count",
                    "revision", "reason")


def _open(console: Console) -> sqlite3.Connection:
    return connect(console.runtime.siem_db_path)


def _shown(value: Any) -> Any:
    """List columns are stored as |a|b| for matching; show them as a, b."""
    if isinstance(value, str) and len(value) > 1 and value.startswith("|") and value.endswith("|"):
        return ", ".join(v for v in value.strip("|").split("|") if v)
    return value


def evidence(conn: sqlite3.Connection, ids: list[str]) -> list[dict[str, Any]]:
    """The SIEM store's flattened copies of these events, oldest first (any kind); ids it does not
    hold (yet) are listed last, so the analyst sees that evidence is missing rather than nothing."""
    out = []
    for kind, rec in EventStore(conn).by_ids(ids):
        details = {c: _shown(rec[c]) for c in EVIDENCE_COLUMNS if rec.get(c) not in (None, "", "[]", "||")}
        out.append({"event_id": rec["event_id"], "kind": kind,
                    "time": datetime.fromtimestamp(rec["ts"], UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                    "ts": rec["ts"], "details": details})
    found = {e["event_id"] for e in out}
    out += [{"event_id": i, "kind": None, "time": "", "ts": 0, "details": {}} for i in ids if i not in found]
    return out


def alert_citizens(conn: sqlite3.Connection, alert: Any, events: list[dict[str, Any]] | None = None) -> set[str]:
    """The citizens an alert concerns: its group key and every citizen_ref in its evidence."""
    evidence_events = events if events is not None else evidence(conn, alert.evidence)
    refs = {str(e["details"]["citizen_ref"]) for e in evidence_events if e["details"].get("citizen_ref")}
    if alert.group_keys.get("citizen_ref"):
        refs.add(str(alert.group_keys["citizen_ref"]))
    return refs


def open_alert_about(console: Console, alert_id: str, citizen_ref: str) -> bool:
    """Is ``alert_id`` an alert not yet closed whose evidence concerns ``citizen_ref``? (A SOC analyst's
    need to know: they trace a citizen from an alert about them, never any citizen they like.)"""
    conn = _open(console)
    try:
        with console.runtime.alerts() as store:
            alert = store.get(alert_id)
        return alert.status != "closed" and citizen_ref in alert_citizens(conn, alert)
    except AlertNotFound:
        return False
    finally:
        conn.close()


def delivery_status(console: Console, alert_ids: list[str]) -> dict[str, dict[str, str]]:
    """Per alert, per channel (syslog, email, webhook, escalation): delivered, pending, retrying or
    failed — read from the delivery outbox when delivery is configured (empty otherwise)."""
    path = console.runtime.delivery_db_path
    if not alert_ids or not path.exists():
        return {}
    from siem_rules.delivery import Delivery, connect_outbox

    conn = connect_outbox(path)
    try:
        return Delivery.alert_status(conn, alert_ids)
    except sqlite3.Error:  # the page still lists alerts when the outbox cannot be read
        return {}
    finally:
        conn.close()


def add_routes(router: APIRouter, console: Console) -> None:
    @router.get("/alerts")
    def alerts(request: Request) -> Response:
        ctx = console.ctx(request)
        console.require(ctx, guard.ALERTS)
        q = request.query_params
        status, level, rule = q.get("status", ""), q.get("level", ""), q.get("rule", "")
        if status and status not in STATUSES:
            raise PageError(400, "alerts.bad_filter")
        if level and level not in LEVELS:
            raise PageError(400, "alerts.bad_filter")
        with console.runtime.alerts() as store:
            every = store.list()
        rules = sorted({a.rule_name for a in every})
        shown = [a for a in every if (not status or a.status == status) and (not level or a.level == level)
                 and (not rule or a.rule_name == rule)]
        shown.sort(key=lambda a: (LEVELS.index(a.level) if a.level in LEVELS else 0, a.last_seen), reverse=True)
        delivery = delivery_status(console, [a.alert_id for a in shown[:MAX_LISTED]])
        return console.render(ctx, "alerts.html.j2", alerts=shown[:MAX_LISTED], total=len(every), delivery=delivery,
                              matching=len(shown), statuses=STATUSES,
                              levels=LEVELS, rules=rules, filters={"status": status, "level": level, "rule": rule})

    @router.get("/alerts/{alert_id}")
    def alert(request: Request, alert_id: str) -> Response:
        ctx = console.ctx(request)
        console.require(ctx, guard.ALERTS)
        conn = _open(console)
        try:
            with console.runtime.alerts() as store:
                found = store.get(alert_id)
            events = evidence(conn, found.evidence[:EVIDENCE_SHOWN])
            refs = sorted(alert_citizens(conn, found, events))
        except AlertNotFound:
            raise PageError(404, "alerts.not_found") from None
        finally:
            conn.close()
        done = request.query_params.get("done", "")
        return console.render(ctx, "alert.html.j2", alert=found, events=events, done=done if done in STATUSES else "",
                              can_triage=console.shows(ctx, guard.ALERT_TRIAGE), citizens=refs,
                              can_trace=console.shows(ctx, guard.TRACE))

    @router.post("/alerts/{alert_id}/status")
    async def change_status(request: Request, alert_id: str) -> Response:
        ctx = console.ctx(request)
        form = await console.form(request)
        console.check_csrf(ctx, form)
        status = form.get("status", "")
        if status not in STATUSES:
            raise PageError(400, "alerts.bad_status")

        def change() -> None:
            s = console.require(ctx, guard.ALERT_TRIAGE, record_id=alert_id[:128])
            conn = _open(console)
            try:
                with console.runtime.alerts() as store:
                    updated = triage.set_status(store, alert_id, status, actor=s.subject, events=conn)
            except AlertNotFound:
                raise PageError(404, "alerts.not_found") from None
            finally:
                conn.close()
            for sink in console.runtime.alert_sinks():
                # The embedded store is the record; the Elasticsearch mirror catches up on the next run.
                with contextlib.suppress(SiemError, OSError):
                    sink.publish([updated])

        await run_in_threadpool(change)
        return console.redirect(ctx, f"{PREFIX}/alerts/{alert_id}?done={status}")
