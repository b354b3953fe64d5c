"""Where alerts live: the :class:`AlertBackend` interface, and the logic both drivers share.

Two drivers: :class:`siem_rules.alerts.AlertStore` (SQLite, in ``siem.db`` beside the events, the
default) and :class:`siem_rules.pg_alerts.PostgresAlertStore` (PostgreSQL with
``ZTCP_DATABASE_URL``: every replica's console and the scheduler leader share one set of alerts).
The algorithm is written once here over a few SQL primitives; the drivers differ in connections,
transactions and how the chain head is locked. ``tests/siem_rules/test_alert_store_conformance.py``
runs the same suite against both.

**Alerts** are upserted by their deterministic id (rule, group key, first evidence event), so
re-running the same events — a crash mid-run, a new scheduler leader re-reading the last window —
changes nothing. A closed alert is never extended or reopened by a run.

**History** is tamper-evident: every row (an alert's creation, each run that extended it, each
acknowledge / close / reopen / comment) carries a link of one hash chain (:mod:`contracts.log_chain`)
in ``seq`` order. Every write transaction first locks the chain's head row (one row table
``siem_alert_chain``: newest ``seq`` and link, and the prune mark), so writers — on any replica —
queue behind one another, the chain cannot fork, and no two writers wait on each other's rows.
Retention (:meth:`prune`) deletes only a prefix of the chain and records the link of the last row it
deleted; :meth:`verify_history` starts there.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import uuid_utils

from contracts.alert_event import ALERT_ADMIN_TYPES
from contracts.log_chain import ChainBreak, heads_match, link, verify_chain

from .errors import AlertNotFound, SiemError

if TYPE_CHECKING:
    from .alerts import Alert, Hit

STATUSES = ("open", "acknowledged", "closed")
SYSTEM_ACTOR = "ztcp-siem"  # the actor of history rows the rule engine writes (creation, extension)
HISTORY_FIELDS = ("seq", "event_id", "time", "type", "actor", "alert_id", "rule_id", "level", "from_status",
                  "to_status", "self_review", "comment", "detail")
_HISTORY_COLS = ", ".join(HISTORY_FIELDS)
_COLS = ("alert_id, rule_id, rule_name, rule_title, rule_type, level, group_json, window_start, window_end, "
         "first_ts, last_ts, metric, status, created_at, updated_at, explanation")
_INSERT_HISTORY = f"INSERT INTO siem_alert_history ({_HISTORY_COLS}, link) VALUES ({', '.join('?' * 14)})"  # noqa: S608
_CHUNK = 500  # ids per IN (…) list: under SQLite's host-parameter limit


class Watermark(NamedTuple):
    """How far one rule has evaluated one event kind: the local ``rid`` of the SIEM store that ran
    it (``instance``), and the newest event time it had then (what another replica can use)."""

    rid: int
    ts: float
    instance: str


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@runtime_checkable
class AlertBackend(Protocol):
    """The alert store every reader and writer of alerts goes through (engine, console, CLI, delivery)."""

    evidence_cap: int
    shared: bool  # True: alerts (and watermarks) live outside the local siem.db (PostgreSQL)

    def transaction(self) -> AbstractContextManager[None]: ...
    def merge(self, rule: Any, hits: list[Hit], now: str) -> set[str]: ...  # noqa: ANN401 - rulepack.AlertingRule
    def list(self, status: str | None = None, rule_id: str | None = None, limit: int | None = None) -> list[Alert]: ...
    def get(self, alert_id: str) -> Alert: ...
    def set_status(self, alert_id: str, status: str, *, actor: str, subjects: set[str] | None = None,
                   comment: str | None = None) -> Alert: ...
    def comment(self, alert_id: str, text: str, *, actor: str, subjects: set[str] | None = None) -> None: ...
    def history(self, alert_id: str) -> builtins.list[dict[str, Any]]: ...
    def subjects(self, alert_id: str) -> set[str]: ...
    def delivery_mark(self) -> int | None: ...
    def set_delivery_mark(self, seq: int) -> None: ...
    def events_after(self, cursor: str | int | None, limit: int = 50_000
                     ) -> tuple[builtins.list[dict[str, Any]], int | None]: ...
    def changes_after(self, cursor: int, limit: int = 5000) -> builtins.list[tuple[int, str, str]]: ...
    def alert_row(self, alert_id: str) -> dict[str, Any] | None: ...
    def open_critical(self) -> builtins.list[tuple[str, str, int]]: ...
    def count(self) -> int: ...
    def watermark(self, rule_id: str, kind: str) -> Watermark | None: ...
    def save_watermarks(self, rule_id: str, marks: dict[str, Watermark]) -> None: ...
    def verify_history(self) -> tuple[ChainBreak | None, int]: ...
    def prune(self, before: datetime, keep_alert_ids: Collection[str]) -> int: ...
    def close(self) -> None: ...


class ChainedAlertStore:
    """The shared algorithm. Drivers provide :meth:`_q` (rows of a query), :meth:`_x` (rows changed
    by a statement), :meth:`_xm` (by a statement over many argument rows), :meth:`transaction` (one
    write transaction, re-entrant), :meth:`_snapshot` (a consistent read) and ``_HEAD`` (the query
    that reads — and on PostgreSQL locks — the chain head). SQL is written with ``?`` placeholders."""

    evidence_cap: int
    shared = False
    _HEAD = "SELECT seq, link, prune_seq, prune_link FROM siem_alert_chain WHERE id = 1"

    # ---- driver primitives ----

    def _q(self, sql: str, args: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        raise NotImplementedError

    def _x(self, sql: str, args: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    def _xm(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        return None

    # ---- the chain ----

    def _head(self) -> tuple[int, bytes, int, bytes]:
        rows = self._q(self._HEAD)
        if not rows:
            raise SiemError("the alert store has no history chain head (not migrated)")
        seq, head, prune_seq, prune_link = rows[0]
        return int(seq), bytes(head), int(prune_seq), bytes(prune_link)

    def _append(self, entries: builtins.list[dict[str, Any]]) -> None:
        """Append history rows (inside a transaction): each gets the next ``seq`` and its link."""
        if not entries:
            return
        seq, previous, _, _ = self._head()  # on PostgreSQL: FOR UPDATE, held to commit
        rows = []
        for entry in entries:
            seq += 1
            record = {**entry, "seq": seq}
            previous = link(previous, {k: record[k] for k in HISTORY_FIELDS})
            rows.append((*(record[k] for k in HISTORY_FIELDS), previous))
        self._xm(_INSERT_HISTORY, rows)
        self._x("UPDATE siem_alert_chain SET seq = ?, link = ? WHERE id = 1", (seq, previous))

    @staticmethod
    def _entry(kind: str, actor: str, alert_id: str, rule_id: str, level: str, now: str, *,
               old: str | None = None, new: str | None = None, self_review: bool = False,
               comment: str | None = None, detail: str | None = None) -> dict[str, Any]:
        return {"event_id": str(uuid_utils.uuid7()), "time": now, "type": kind, "actor": actor,
                "alert_id": alert_id, "rule_id": rule_id, "level": level, "from_status": old, "to_status": new,
                "self_review": int(self_review), "comment": comment, "detail": detail}

    def verify_history(self) -> tuple[ChainBreak | None, int]:
        """Recompute the history chain from the prune mark (or genesis): the first row that does
        not fit (named by its ``seq``) or None, and the number of rows checked. Rows removed from
        the end are caught against the head row."""
        with self._snapshot():
            head_seq, head_link, prune_seq, prune_link = self._head()

            def rows() -> Iterator[tuple[int, dict[str, Any], bytes]]:
                after = prune_seq
                while True:
                    page = self._q(f"SELECT {_HISTORY_COLS}, link FROM siem_alert_history WHERE seq > ? "  # noqa: S608
                                   "ORDER BY seq LIMIT 10000", (after,))
                    for r in page:
                        yield int(r[0]), dict(zip(HISTORY_FIELDS, r[:-1], strict=True)), bytes(r[-1] or b"")
                    if len(page) < 10000:
                        return
                    after = int(page[-1][0])

            brk, last, checked = verify_chain(rows(), start=prune_link)
        if brk is None and not heads_match(last, head_link):
            brk = ChainBreak(head_seq, "the chain ends before its recorded head (newest records removed)")
        return brk, checked

    def prune(self, before: datetime, keep_alert_ids: Collection[str]) -> int:
        """Delete closed alerts last changed before ``before`` (and their history, evidence), except
        ``keep_alert_ids`` (legal holds). Only a prefix of the chain is deleted: the walk stops at the
        first history row of an alert that stays, and an alert is deleted only with all its rows.
        The link of the last deleted row becomes the prune mark. Returns the alerts deleted."""
        if before.tzinfo is None:
            raise SiemError("prune: 'before' needs a time zone")
        keep = set(keep_alert_ids)
        with self.transaction():
            _, _, prune_seq, prune_link = self._head()
            last_change: dict[str, datetime] = {}
            for alert_id, updated_at in self._q("SELECT alert_id, updated_at FROM siem_alerts WHERE status = 'closed'"):
                if alert_id not in keep:
                    last_change[alert_id] = _parse(updated_at)
            for alert_id, _, time_max in self._q(
                    "SELECT alert_id, MAX(seq), MAX(time) FROM siem_alert_history GROUP BY alert_id"):
                if alert_id in last_change:
                    last_change[alert_id] = max(last_change[alert_id], _parse(time_max))
            eligible = {a for a, t in last_change.items() if t < before}
            if not eligible:
                return 0
            last_row = {a: int(s) for a, s, _ in self._q(
                "SELECT alert_id, MAX(seq), 0 FROM siem_alert_history GROUP BY alert_id")}
            cut_seq, cut_link = prune_seq, prune_link
            seen: set[str] = set()
            done: set[str] = set()
            need = 0
            for seq, alert_id, stored in self._q(
                    "SELECT seq, alert_id, link FROM siem_alert_history WHERE seq > ? ORDER BY seq", (prune_seq,)):
                if alert_id not in eligible:
                    break
                seen.add(alert_id)
                need = max(need, last_row[alert_id])
                if need <= seq:  # every alert met so far ends here or earlier: a clean cut
                    cut_seq, cut_link, done = int(seq), bytes(stored), set(seen)
            doomed = sorted(done | {a for a in eligible if a not in last_row})
            if cut_seq > prune_seq:
                self._x("DELETE FROM siem_alert_history WHERE seq > ? AND seq <= ?", (prune_seq, cut_seq))
                self._x("UPDATE siem_alert_chain SET prune_seq = ?, prune_link = ? WHERE id = 1", (cut_seq, cut_link))
            for i in range(0, len(doomed), _CHUNK):
                chunk = doomed[i : i + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                self._x(f"DELETE FROM siem_alert_evidence WHERE alert_id IN ({marks})", chunk)  # noqa: S608
                self._x(f"DELETE FROM siem_alerts WHERE alert_id IN ({marks})", chunk)  # noqa: S608
            return len(doomed)

    # ---- merging (the engine's run) ----

    def merge(self, rule: Any, hits: builtins.list[Hit], now: str) -> set[str]:  # noqa: ANN401
        """Merge hits (any order) into alerts of ``rule``; returns ids of alerts created or extended."""
        from .alerts import group_hash

        touched: set[str] = set()
        created: set[str] = set()
        people: dict[str, set[str]] = {}  # the engine's hint (shared stores): who the evidence names
        with self.transaction():
            self._head()  # every writer locks the head first: one order of locks, no deadlock
            for hit in sorted(hits, key=lambda h: (h.first_ts, h.window_end)):
                gh = group_hash(hit.group)
                rows = self._q(
                    "SELECT alert_id, first_ts, last_ts, window_start, window_end, metric, explanation "
                    "FROM siem_alerts WHERE rule_id = ? AND group_hash = ? AND status <> 'closed' "
                    "AND last_ts >= ? AND first_ts <= ? "
                    "ORDER BY last_ts DESC LIMIT 1",
                    (rule.id, gh, hit.first_ts - hit.gap, hit.last_ts + hit.gap))
                row = rows[0] if rows else None
                if row is None and self._known(rule.id, gh, [eid for _, eid in hit.evidence]):
                    continue  # events already alerted on (a closed alert), seen again: nothing new
                if row is None:
                    first_id = min(hit.evidence)[1]
                    import hashlib

                    alert_id = "al_" + hashlib.sha256(f"{rule.id}|{gh}|{first_id}".encode()).hexdigest()[:20]
                    inserted = self._x(
                        "INSERT INTO siem_alerts (alert_id, rule_id, rule_name, rule_title, rule_type, level, "
                        "group_json, group_hash, window_start, window_end, first_ts, last_ts, metric, status, "
                        "created_at, updated_at, explanation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'open',?,?,?) "
                        "ON CONFLICT (alert_id) DO NOTHING",
                        (alert_id, rule.id, rule.name, rule.title, rule.rule_type, rule.level,
                         json.dumps(hit.group, sort_keys=True, default=str), gh, hit.window_start, hit.window_end,
                         hit.first_ts, hit.last_ts, hit.metric, now, now, hit.explanation))
                    if not inserted:
                        # The same episode seen again (re-processing): a closed alert stays as it was.
                        status = self._q("SELECT status FROM siem_alerts WHERE alert_id = ?", (alert_id,))
                        if status and status[0][0] == "closed":
                            continue
                    else:
                        created.add(alert_id)
                else:
                    alert_id, first_ts, last_ts, ws, we, metric, explanation = row
                    new_metric = (hit.metric if metric is None
                                  else (max(metric, hit.metric) if hit.metric is not None else metric))
                    if (hit.first_ts < first_ts or hit.last_ts > last_ts or hit.window_start < ws
                            or hit.window_end > we or new_metric != metric
                            or (hit.explanation is not None and hit.explanation != explanation)):
                        self._x(
                            "UPDATE siem_alerts SET first_ts = ?, last_ts = ?, window_start = ?, window_end = ?, "
                            "metric = ?, updated_at = ?, explanation = coalesce(?, explanation) WHERE alert_id = ?",
                            (min(first_ts, hit.first_ts), max(last_ts, hit.last_ts), min(ws, hit.window_start),
                             max(we, hit.window_end), new_metric, now, hit.explanation, alert_id))
                added = self._xm(
                    "INSERT INTO siem_alert_evidence (alert_id, event_id, ts) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                    [(alert_id, eid, ts) for ts, eid in hit.evidence])
                if hit.extra.get("people"):
                    people.setdefault(alert_id, set()).update(hit.extra["people"])
                if alert_id in created or added:
                    touched.add(alert_id)
                    if alert_id not in created:
                        self._x("UPDATE siem_alerts SET updated_at = ? WHERE alert_id = ?", (now, alert_id))
            entries = []
            for alert_id in sorted(touched):
                first_ts, last_ts, ws, we, metric = self._q(
                    "SELECT first_ts, last_ts, window_start, window_end, metric FROM siem_alerts WHERE alert_id = ?",
                    (alert_id,))[0]
                detail = json.dumps({"first_ts": first_ts, "last_ts": last_ts, "window_start": ws, "window_end": we,
                                     "metric": metric}, sort_keys=True)
                kind = "alert.create" if alert_id in created else "alert.update"
                entries.append(self._entry(kind, SYSTEM_ACTOR, alert_id, rule.id, rule.level, now,
                                           new="open" if alert_id in created else None, detail=detail))
            self._append(entries)
            for alert_id, names in sorted(people.items()):
                self._add_subjects(alert_id, names)
        return touched

    def _known(self, rule_id: str, gh: str, event_ids: builtins.list[str]) -> bool:
        """Is every one of these events already evidence of an alert of this rule and group?"""
        found = 0
        unique = sorted(set(event_ids))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = ("SELECT COUNT(DISTINCT e.event_id) FROM siem_alert_evidence e JOIN siem_alerts a "  # noqa: S608
                   f"ON a.alert_id = e.alert_id WHERE a.rule_id = ? AND a.group_hash = ? AND e.event_id IN ({marks})")
            found += int(self._q(sql, (rule_id, gh, *chunk))[0][0])
        return bool(unique) and found == len(unique)

    # ---- reading ----

    def _to_alert(self, row: tuple[Any, ...]) -> Alert:
        from .alerts import Alert, iso

        (alert_id, rule_id, rule_name, rule_title, rule_type, level, group_json, ws, we, first_ts, last_ts, metric,
         status, created_at, updated_at, explanation) = row
        (count,) = self._q("SELECT COUNT(*) FROM siem_alert_evidence WHERE alert_id = ?", (alert_id,))[0]
        evidence = [r[0] for r in self._q(
            "SELECT event_id FROM siem_alert_evidence WHERE alert_id = ? ORDER BY ts, event_id LIMIT ?",
            (alert_id, self.evidence_cap))]
        return Alert(alert_id=alert_id, rule_id=rule_id, rule_name=rule_name, rule_title=rule_title,
                     rule_type=rule_type, level=level, group_keys=json.loads(group_json), window_start=iso(ws),
                     window_end=iso(we), first_seen=iso(first_ts), last_seen=iso(last_ts), event_count=int(count),
                     evidence=evidence, metric=metric, status=status, created_at=created_at, updated_at=updated_at,
                     explanation=explanation)

    def list(self, status: str | None = None, rule_id: str | None = None,
             limit: int | None = None) -> builtins.list[Alert]:
        if status is not None and status not in STATUSES:
            raise SiemError(f"status must be one of {', '.join(STATUSES)}")
        sql = f"SELECT {_COLS} FROM siem_alerts WHERE TRUE"  # noqa: S608
        args: builtins.list[Any] = []
        if status:
            sql += " AND status = ?"
            args.append(status)
        if rule_id:
            sql += " AND rule_id = ?"
            args.append(rule_id)
        sql += " ORDER BY first_ts, alert_id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._snapshot():
            return [self._to_alert(r) for r in self._q(sql, args)]

    def get(self, alert_id: str) -> Alert:
        with self._snapshot():
            rows = self._q(f"SELECT {_COLS} FROM siem_alerts WHERE alert_id = ?", (alert_id,))  # noqa: S608
            if not rows:
                raise AlertNotFound(alert_id)
            return self._to_alert(rows[0])

    def alert_row(self, alert_id: str) -> dict[str, Any] | None:
        """The stored columns of one alert and its evidence count (what delivery formats)."""
        rows = self._q(
            "SELECT alert_id, rule_id, rule_name, rule_title, rule_type, level, group_json, window_start, window_end, "
            "first_ts, last_ts, status, created_at, updated_at, explanation, "
            "(SELECT COUNT(*) FROM siem_alert_evidence e WHERE e.alert_id = a.alert_id) FROM siem_alerts a "
            "WHERE alert_id = ?", (alert_id,))
        if not rows:
            return None
        names = ("alert_id", "rule_id", "rule_name", "rule_title", "rule_type", "level", "group_json", "window_start",
                 "window_end", "first_ts", "last_ts", "status", "created_at", "updated_at", "explanation",
                 "event_count")
        return dict(zip(names, rows[0], strict=True))

    def count(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM siem_alerts")[0][0])

    # ---- triage ----

    def set_status(self, alert_id: str, status: str, *, actor: str, subjects: set[str] | None = None,
                   comment: str | None = None) -> Alert:
        """Change an alert's status as ``actor``, recorded in the alert's history (same transaction).

        ``subjects`` are the people the alert concerns (see :func:`alerts.alert_subjects`); when the
        actor is one of them the change is marked ``self_review`` (a rule watches for it)."""
        if status not in STATUSES:
            raise SiemError(f"status must be one of {', '.join(STATUSES)}")
        kind = {"acknowledged": "alert.acknowledge", "closed": "alert.close", "open": "alert.reopen"}[status]
        now = now_iso()
        with self.transaction():
            self._head()
            rows = self._q("SELECT status, rule_id, level FROM siem_alerts WHERE alert_id = ?", (alert_id,))
            if not rows:
                raise AlertNotFound(alert_id)
            old, rule_id, level = rows[0]
            self._x("UPDATE siem_alerts SET status = ?, updated_at = ? WHERE alert_id = ?", (status, now, alert_id))
            self._append([self._entry(kind, actor, alert_id, rule_id, level, now, old=old, new=status,
                                      self_review=_self_review(actor, subjects), comment=comment)])
        return self.get(alert_id)

    def comment(self, alert_id: str, text: str, *, actor: str, subjects: set[str] | None = None) -> None:
        """Add a comment (1–2000 characters, screened for raw personal identifiers) to the history."""
        from .alerts import screen_comment

        text = screen_comment(text)
        with self.transaction():
            self._head()
            rows = self._q("SELECT rule_id, level FROM siem_alerts WHERE alert_id = ?", (alert_id,))
            if not rows:
                raise AlertNotFound(alert_id)
            rule_id, level = rows[0]
            self._append([self._entry("alert.comment", actor, alert_id, rule_id, level, now_iso(),
                                      self_review=_self_review(actor, subjects), comment=text)])

    _TRIAGE = ", ".join(f"'{t}'" for t in ALERT_ADMIN_TYPES)

    def history(self, alert_id: str) -> builtins.list[dict[str, Any]]:
        """The triage of one alert (acknowledge, close, reopen, comment), oldest first."""
        sql = ("SELECT time, type, actor, from_status, to_status, self_review, comment FROM siem_alert_history"  # noqa: S608
               f" WHERE alert_id = ? AND type IN ({self._TRIAGE}) ORDER BY seq")
        rows = self._q(sql, (alert_id,))
        return [{"time": r[0], "type": r[1], "actor": r[2], "from_status": r[3], "to_status": r[4],
                 "self_review": bool(r[5]), "comment": r[6]} for r in rows]

    def events_after(self, cursor: str | int | None,
                     limit: int = 50_000) -> tuple[builtins.list[dict[str, Any]], int | None]:
        """Triage entries as alert administration events (contracts.alert_event), for the SIEM itself."""
        after = int(cursor or 0)
        sql = ("SELECT seq, event_id, time, type, actor, alert_id, rule_id, level, from_status, to_status, "  # noqa: S608
               f"self_review, type IN ({self._TRIAGE}) FROM siem_alert_history WHERE seq > ? ORDER BY seq LIMIT ?")
        rows = self._q(sql, (after, limit))
        events = [{"event_id": r[1], "time": r[2], "type": r[3], "actor": r[4], "alert_id": r[5], "rule_id": r[6],
                   "level": r[7], "from_status": r[8], "to_status": r[9], "self_review": bool(r[10])}
                  for r in rows if r[11]]
        return events, (int(rows[-1][0]) if rows else (after or None))

    def changes_after(self, cursor: int, limit: int = 5000) -> builtins.list[tuple[int, str, str]]:
        """What delivery notifies, after ``cursor`` (a history ``seq``): ``(seq, alert_id, status)``
        for each creation (status ``created``) and each status change."""
        rows = self._q(
            "SELECT seq, alert_id, type, to_status FROM siem_alert_history WHERE seq > ? ORDER BY seq LIMIT ?",
            (cursor, limit))
        out = []
        for seq, alert_id, kind, to_status in rows:
            if kind == "alert.create":
                out.append((int(seq), alert_id, "created"))
            elif kind in ALERT_ADMIN_TYPES and to_status:
                out.append((int(seq), alert_id, to_status))
            else:
                out.append((int(seq), alert_id, ""))  # moves the cursor, nothing to notify
        return out

    def open_critical(self) -> builtins.list[tuple[str, str, int]]:
        """Critical alerts still open: ``(alert_id, opened at, change)`` — opened at creation or at
        the last reopen (``change`` is that reopen's ``seq``, 0 for creation)."""
        out = []
        for alert_id, created_at in self._q(
                "SELECT alert_id, created_at FROM siem_alerts WHERE status = 'open' AND level = 'critical'"):
            row = self._q("SELECT seq, time FROM siem_alert_history WHERE alert_id = ? AND type = 'alert.reopen' "
                          "ORDER BY seq DESC LIMIT 1", (alert_id,))
            out.append((alert_id, row[0][1], int(row[0][0])) if row else (alert_id, created_at, 0))
        return out

    # ---- the people an alert concerns, for replicas that do not hold its evidence events ----

    def subjects(self, alert_id: str) -> set[str]:
        """People named by the alert's evidence as recorded when it was raised (shared stores; the
        SQLite store's evidence events are beside it, so it records none)."""
        return set()

    def _add_subjects(self, alert_id: str, names: set[str]) -> None:
        return None

    # ---- delivery progress (shared stores: where a new leader's delivery backlog starts) ----

    def delivery_mark(self) -> int | None:
        return None

    def set_delivery_mark(self, seq: int) -> None:
        return None

    # ---- watermarks (the shared driver keeps them; SQLite keeps them in the engine's own table) ----

    def watermark(self, rule_id: str, kind: str) -> Watermark | None:
        return None

    def save_watermarks(self, rule_id: str, marks: dict[str, Watermark]) -> None:
        return None


def _self_review(actor: str, subjects: set[str] | None) -> bool:
    return actor.lower() in {s.lower() for s in subjects or ()}
