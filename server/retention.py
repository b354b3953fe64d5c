"""Retention as this installation applies it: per store, its ZTCP_RETENTION_*_DAYS, legal holds honoured.

Stores and what a hold means for them:

* ``decisions``: the decision log (either driver): entries of a held citizen or case stay; the rest
  goes in runs, each leaving a prune mark signed with the checkpoint key so the chain verifies.
* ``siem_events``: the SIEM's event copies: decision and provenance events of a held citizen or
  case stay (the other kinds name no citizen).
* ``alerts``: closed alerts and their history (the alert store's ``prune``); alerts whose evidence
  concerns a held citizen or case stay.
* ``key_audit``: key events name keys and datasets, never citizens: no hold concerns them.
* ``console_sessions``: sign-in sessions (PostgreSQL; in memory otherwise, nothing kept).

The provenance ledger is not here: it is never deleted (``ztcp logs archive``).

Fail closed: if the holds cannot be read, nothing is deleted. If a store cannot tell which of its
records a hold concerns and would delete records while holds exist, that store's retention is
refused (:class:`RetentionRefused`, exit 2) rather than risk deleting what a hold protects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.errors import ServerError
from server.holds import HoldSet, hold_store
from server.settings import Settings

log = logging.getLogger("ztcp.server.retention")

STORES = ("decisions", "siem_events", "alerts", "key_audit", "console_sessions")
STATUS_FILE = "retention.json"
DAY = 86400.0


class RetentionRefused(ServerError):
    exit_code = 2


@dataclass
class StoreOutcome:
    store: str
    days: int
    before: float | None
    deleted: int = 0
    kept_by_hold: int = 0
    status: str = "ok"  # ok | kept forever | absent | refused | failed

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "days": self.days,
                "before": datetime.fromtimestamp(self.before, tz=UTC).isoformat() if self.before else None,
                "deleted": self.deleted, "kept_by_hold": self.kept_by_hold, "status": self.status}


@dataclass
class RetentionReport:
    at: float
    applied: bool
    holds: int
    stores: list[StoreOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status not in ("refused", "failed") for s in self.stores)

    def as_dict(self) -> dict[str, Any]:
        return {"at": datetime.fromtimestamp(self.at, tz=UTC).isoformat(), "applied": self.applied,
                "holds": self.holds, "ok": self.ok, "stores": [s.as_dict() for s in self.stores]}


def days_for(settings: Settings, store: str) -> int:
    return int(getattr(settings, f"retention_{store}_days"))


# -- per store ----------------------------------------------------------------------------------------

def _decisions(settings: Settings, before: float, holds: HoldSet, apply: bool,
               sign: Callable[[str], Callable[[Any], str]] | None) -> tuple[int, int] | None:
    from server.log_integrity import decision_store

    store = decision_store(settings, readonly=False)
    if store is None:
        return None
    try:
        res = store.prune(before, holds.matcher() if holds else None,
                          sign("decision_log") if sign else None, apply=apply)
        return res.deleted, res.kept_by_hold
    finally:
        store.close()


def _key_audit(settings: Settings, before: float, holds: HoldSet, apply: bool,
               sign: Callable[[str], Callable[[Any], str]] | None) -> tuple[int, int] | None:
    from server.log_integrity import key_audit

    audit = key_audit(settings)
    if audit is None:
        return None
    try:
        res = audit.prune(before, None, sign("key_audit") if sign else None, apply=apply)
        return res.deleted, 0
    finally:
        audit.close()


def _held_clause(holds: HoldSet, *, held: bool = False) -> tuple[str, list[str]]:
    """SQL (``AND …``) selecting the rows no hold concerns, or with ``held`` the rows one does."""
    if not holds:
        return ("AND 0 = 1" if held else ""), []
    parts, args = [], []
    if holds.citizens:
        parts.append(f"citizen_ref IN ({', '.join('?' * len(holds.citizens))})")
        args += sorted(holds.citizens)
    if holds.cases:
        parts.append(f"case_id IN ({', '.join('?' * len(holds.cases))})")
        args += sorted(holds.cases)
    return (" AND (" if held else " AND NOT (") + " OR ".join(parts) + ")", args


def _siem_events(settings: Settings, before: float, holds: HoldSet, apply: bool,
                 sign: object) -> tuple[int, int] | None:
    from server.siem import DB_NAME
    from siem_rules import connect
    from siem_rules.events import FIELDS
    from siem_rules.store import TABLE

    path = settings.ensure_home() / DB_NAME
    if not path.exists():
        return None
    conn = connect(path)
    deleted = kept = 0
    try:
        conn.execute("BEGIN IMMEDIATE")
        for kind, table in TABLE.items():
            columns = {c.column for c in FIELDS[kind]}
            clause, args = _held_clause(holds) if {"citizen_ref", "case_id"} <= columns else ("", [])
            old = int(conn.execute(f"SELECT count(*) FROM {table} WHERE ts < ?", (before,)).fetchone()[0])  # noqa: S608
            gone = int(conn.execute(f"SELECT count(*) FROM {table} WHERE ts < ?{clause}",  # noqa: S608
                                    (before, *args)).fetchone()[0])
            if apply and gone:
                conn.execute(f"DELETE FROM {table} WHERE ts < ?{clause}", (before, *args))  # noqa: S608
            deleted, kept = deleted + gone, kept + old - gone
        conn.execute("COMMIT" if apply else "ROLLBACK")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return deleted, kept


def held_alert_ids(settings: Settings, backend: Any, holds: HoldSet) -> set[str]:
    """Alerts whose evidence is a decision or provenance event of a held citizen or case (events in
    this home's SIEM store, alerts in the alert backend: SQLite beside them or PostgreSQL), and
    alerts whose group names a held citizen."""
    if not holds:
        return set()
    from server.siem import DB_NAME
    from siem_rules import connect
    from siem_rules.store import TABLE

    clause, args = _held_clause(holds, held=True)
    events: list[str] = []
    path = settings.ensure_home() / DB_NAME
    if path.exists():
        conn = connect(path)
        try:
            for kind in ("decision", "provenance"):
                events += [r[0] for r in conn.execute(
                    f"SELECT event_id FROM {TABLE[kind]} WHERE 1 = 1{clause}", args)]  # noqa: S608
        finally:
            conn.close()
    ids: set[str] = set()
    # The backend's own query helper (``?`` placeholders on both drivers): no method of the
    # AlertBackend interface answers "alerts with this evidence".
    for i in range(0, len(events), 500):
        chunk = events[i:i + 500]
        ids.update(r[0] for r in backend._q(
            f"SELECT DISTINCT alert_id FROM siem_alert_evidence WHERE event_id IN ({', '.join('?' * len(chunk))})",  # noqa: S608
            chunk))
    for ref in holds.citizens:
        ids.update(r[0] for r in backend._q("SELECT alert_id FROM siem_alerts WHERE group_json LIKE ?",
                                            (f"%{ref}%",)))
    return ids


def _alerts(settings: Settings, before: float, holds: HoldSet, apply: bool,
            sign: object) -> tuple[int, int] | None:
    from server.log_integrity import alert_backend

    backend = alert_backend(settings)
    if backend is None:
        return None
    try:
        if not hasattr(backend, "prune") or not hasattr(backend, "_q"):
            # An alert store that cannot delete selectively: refused while a hold could be concerned.
            if holds:
                raise RetentionRefused("alerts: this alert store cannot honour legal holds: retention refused")
            return 0, 0
        keep = held_alert_ids(settings, backend, holds)
        if not apply:
            old = {r[0] for r in backend._q("SELECT alert_id FROM siem_alerts WHERE status = 'closed' AND "
                                            "last_ts < ?", (before,))}
            return len(old - keep), len(old & keep)
        deleted = int(backend.prune(datetime.fromtimestamp(before, tz=UTC), keep))
        return deleted, len(keep)
    finally:
        backend.close()


def _console_sessions(settings: Settings, before: float, holds: HoldSet, apply: bool,
                      sign: object) -> tuple[int, int] | None:
    if not settings.database_url:
        return None  # sessions live in the server's memory: nothing is kept to delete
    from pdp.storage import pg_connect

    conn = pg_connect(settings.database_url, autocommit=True)
    try:
        exists = conn.execute("SELECT to_regclass('console_sessions')").fetchone()
        if exists is None or exists[0] is None:
            return None
        sql = "FROM console_sessions WHERE last_seen < %s"
        counted = conn.execute(f"SELECT count(*) {sql}", (before,)).fetchone()  # noqa: S608
        n = int(counted[0]) if counted else 0
        if apply and n:
            conn.execute(f"DELETE {sql}", (before,))  # noqa: S608
        return n, 0
    finally:
        conn.close()


_APPLY = {"decisions": _decisions, "siem_events": _siem_events, "alerts": _alerts, "key_audit": _key_audit,
          "console_sessions": _console_sessions}


def run_retention(settings: Settings, *, apply: bool, now: float | None = None,
                  only: tuple[str, ...] = STORES, record: bool = True) -> RetentionReport:
    """Apply (or, ``apply=False``, count) retention on every store. Holds unreadable: refused, nothing
    deleted. A store that fails is reported and the others still run. Writes ``retention.json``."""
    now = time.time() if now is None else now
    holds = HoldSet.of(hold_store(settings).list())  # HoldsUnavailable (exit 2) stops everything here
    report = RetentionReport(now, apply, len(holds.citizens) + len(holds.cases))
    sign = _mark_signer(settings) if apply else None
    try:
        for store in only:
            days = days_for(settings, store)
            if days == 0:
                report.stores.append(StoreOutcome(store, 0, None, status="kept forever"))
                continue
            before = now - days * DAY
            outcome = StoreOutcome(store, days, before)
            try:
                got = _APPLY[store](settings, before, holds, apply, sign[0] if sign else None)
                if got is None:
                    outcome.status = "absent"
                else:
                    outcome.deleted, outcome.kept_by_hold = got
            except RetentionRefused as exc:
                outcome.status = "refused"
                log.warning("%s", exc)
            except Exception as exc:  # noqa: BLE001 - one store's failure must not stop the others
                outcome.status = "failed"
                log.warning("retention of %s failed: %s", store, type(exc).__name__)
            report.stores.append(outcome)
    finally:
        if sign is not None:
            sign[1]()
    if record and apply:
        save_status(settings, report)
    return report


def _mark_signer(settings: Settings) -> tuple[Callable[[str], Callable[[Any], str]], Callable[[], None]]:
    """A prune-mark signer per log (the checkpoint key, opened on the first mark) and its release."""
    from server.ledger import ledger_from_settings
    from server.log_integrity import NoteKeys

    opened: list[Any] = []

    def keys() -> NoteKeys:
        if not opened:
            opened.append(ledger_from_settings(settings))
        return NoteKeys(opened[0])

    def for_log(name: str) -> Callable[[Any], str]:
        return lambda mark: keys().mark_signer(name)(mark)

    def close() -> None:
        for ledger in opened:
            ledger.close()

    return for_log, close


def status_path(settings: Settings) -> Path:
    return settings.ensure_home() / STATUS_FILE


def save_status(settings: Settings, report: RetentionReport) -> None:
    path = status_path(settings)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(report.as_dict(), f)
    os.replace(tmp, path)


def retention_status(settings: Settings) -> dict[str, Any]:
    """For /readyz and the console: the last applied run, the settings, the active holds."""
    last = None
    with contextlib.suppress(OSError, ValueError):  # never run yet, or a torn file: no last run shown
        last = json.loads(status_path(settings).read_text(encoding="utf-8"))
    try:
        holds: int | None = len(hold_store(settings).list())
    except ServerError:
        holds = None
    return {"ok": last is None or bool(last.get("ok", True)), "required": False, "last_run": last,
            "holds": holds, "days": {s: days_for(settings, s) for s in STORES}}
