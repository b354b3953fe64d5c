"""Alerts: the model, the SQLite alert store with deduplication across runs, and sinks.

An alert is one *episode* of a rule for one set of group keys: evidence that keeps arriving
within the rule's window (correlations) or suppression gap (detections) extends the same alert
instead of opening a new one, whichever run it arrives in. Alert ids are derived from the rule,
the group keys and the first evidence event, so one full run and many incremental runs over
the same events give the same alerts.

Alerts carry only references (actor ids, ``citizen_ref``, event ids), never personal values.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import uuid_utils
from pydantic import BaseModel

from contracts.screen import screen_text

from .errors import AlertNotFound, SiemError

Status = Literal["open", "acknowledged", "closed"]
STATUSES = ("open", "acknowledged", "closed")
RISK_SCORE = {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Alert(BaseModel):
    alert_id: str
    rule_id: str
    rule_name: str
    rule_title: str
    rule_type: str
    level: str
    group_keys: dict[str, Any]
    window_start: str
    window_end: str
    first_seen: str
    last_seen: str
    event_count: int
    evidence: list[str]  # event ids, oldest first (capped; event_count is exact)
    metric: float | None = None
    status: Status = "open"
    created_at: str
    updated_at: str
    # What an analytic saw, in words ("212 citizens today; usual 8–15; peers 10–20"): counts and
    # ranges only, never a personal value. Sigma rules leave it empty.
    explanation: str | None = None


@dataclass
class Hit:
    """One qualifying window / matching event, before merging into alerts."""

    group: dict[str, Any]
    window_start: float
    window_end: float
    evidence: list[tuple[float, str]]  # (ts, event_id)
    metric: float | None = None
    gap: float = 0.0  # merge with an alert whose last evidence is at most this much older
    extra: dict[str, Any] = field(default_factory=dict)
    explanation: str | None = None  # an analytic's reasons; the latest one is kept on the alert

    @property
    def first_ts(self) -> float:
        return min(t for t, _ in self.evidence)

    @property
    def last_ts(self) -> float:
        return max(t for t, _ in self.evidence)


# Sigma fields that name a person (an employee, a service account) in events and group keys.
PERSON_FIELDS = ("actor", "input.subject.id", "subject_id")


def alert_subjects(alert: Alert, evidence_rows: list[dict[str, Any]] = ()) -> set[str]:  # type: ignore[assignment]
    """The people an alert concerns: person fields of its group key and of its evidence events."""
    people = {str(v) for k, v in alert.group_keys.items() if k in PERSON_FIELDS and v}
    people |= {str(row[c]) for row in evidence_rows for c in ("actor", "subject_id") if row.get(c)}
    return people


def screen_comment(text: str) -> str:
    text = (text or "").strip()
    if not 1 <= len(text) <= 2000:
        raise SiemError("a comment is 1 to 2000 characters")
    try:
        return screen_text(text)
    except ValueError as exc:
        raise SiemError(f"comment refused: {exc}") from None


def group_hash(group: dict[str, Any]) -> str:
    norm = {k: (v.lower() if isinstance(v, str) else v) for k, v in sorted(group.items())}
    return hashlib.sha256(json.dumps(norm, sort_keys=True, default=str).encode()).hexdigest()[:24]


class AlertSink(Protocol):
    def publish(self, alerts: list[Alert]) -> None: ...


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS siem_alerts (
        alert_id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, rule_name TEXT NOT NULL, rule_title TEXT NOT NULL,
        rule_type TEXT NOT NULL, level TEXT NOT NULL, group_json TEXT NOT NULL, group_hash TEXT NOT NULL,
        window_start REAL NOT NULL, window_end REAL NOT NULL, first_ts REAL NOT NULL, last_ts REAL NOT NULL,
        metric REAL, status TEXT NOT NULL DEFAULT 'open', created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS siem_alerts_dedup ON siem_alerts(rule_id, group_hash, last_ts)",
    "CREATE INDEX IF NOT EXISTS siem_alerts_status ON siem_alerts(status, last_ts)",
    # Who changed an alert's status or commented, when: the SOC's own actions, which the SIEM reads
    # back as events of kind "alert" (seq is their cursor).
    """CREATE TABLE IF NOT EXISTS siem_alert_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
        type TEXT NOT NULL, actor TEXT NOT NULL, alert_id TEXT NOT NULL, rule_id TEXT NOT NULL,
        level TEXT NOT NULL, from_status TEXT, to_status TEXT, self_review INTEGER NOT NULL,
        comment TEXT)""",
    """CREATE TABLE IF NOT EXISTS siem_alert_evidence (
        alert_id TEXT NOT NULL, event_id TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (alert_id, event_id))
        WITHOUT ROWID""",
]


class AlertStore:
    def __init__(self, conn: sqlite3.Connection, evidence_cap: int = 500) -> None:
        self.conn = conn
        self.evidence_cap = evidence_cap
        for stmt in _SCHEMA:
            conn.execute(stmt)
        # Stores made before analytics explained themselves get the column in place (NULL = none).
        cols = {r[1] for r in conn.execute("PRAGMA table_info(siem_alerts)")}
        if "explanation" not in cols:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                conn.execute("ALTER TABLE siem_alerts ADD COLUMN explanation TEXT")

    # ---- merging (called inside the engine's transaction) ----

    def merge(self, rule: Any, hits: list[Hit], now: str) -> set[str]:
        """Merge hits (any order) into alerts of ``rule``; returns ids of alerts created or extended."""
        touched: set[str] = set()
        for hit in sorted(hits, key=lambda h: (h.first_ts, h.window_end)):
            gh = group_hash(hit.group)
            row = self.conn.execute(
                "SELECT alert_id, first_ts, last_ts, window_start, window_end, metric, explanation FROM siem_alerts "
                "WHERE rule_id=? AND group_hash=? AND status != 'closed' AND last_ts >= ? AND first_ts <= ? "
                "ORDER BY last_ts DESC LIMIT 1",
                (rule.id, gh, hit.first_ts - hit.gap, hit.last_ts + hit.gap),
            ).fetchone()
            if row is None:
                first_id = min(hit.evidence)[1]
                alert_id = "al_" + hashlib.sha256(f"{rule.id}|{gh}|{first_id}".encode()).hexdigest()[:20]
                self.conn.execute(
                    "INSERT OR IGNORE INTO siem_alerts (alert_id, rule_id, rule_name, rule_title, rule_type, "
                    "level, group_json, group_hash, window_start, window_end, first_ts, last_ts, metric, "
                    "status, created_at, updated_at, explanation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'open',?,?,?)",
                    (
                        alert_id,
                        rule.id,
                        rule.name,
                        rule.title,
                        rule.rule_type,
                        rule.level,
                        json.dumps(hit.group, sort_keys=True, default=str),
                        gh,
                        hit.window_start,
                        hit.window_end,
                        hit.first_ts,
                        hit.last_ts,
                        hit.metric,
                        now,
                        now,
                        hit.explanation,
                    ),
                )
            else:
                alert_id, first_ts, last_ts, ws, we, metric, explanation = row
                new_metric = (
                    hit.metric if metric is None else (max(metric, hit.metric) if hit.metric is not None else metric)
                )
                changed = (
                    hit.first_ts < first_ts
                    or hit.last_ts > last_ts
                    or hit.window_start < ws
                    or hit.window_end > we
                    or new_metric != metric
                    or (hit.explanation is not None and hit.explanation != explanation)
                )
                if changed:
                    self.conn.execute(
                        "UPDATE siem_alerts SET first_ts=?, last_ts=?, window_start=?, window_end=?, metric=?, "
                        "updated_at=?, explanation=coalesce(?, explanation) WHERE alert_id=?",
                        (
                            min(first_ts, hit.first_ts),
                            max(last_ts, hit.last_ts),
                            min(ws, hit.window_start),
                            max(we, hit.window_end),
                            new_metric,
                            now,
                            hit.explanation,
                            alert_id,
                        ),
                    )
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO siem_alert_evidence (alert_id, event_id, ts) VALUES (?,?,?)",
                [(alert_id, eid, ts) for ts, eid in hit.evidence],
            )
            if row is None or self.conn.total_changes != before:
                touched.add(alert_id)
                if row is not None:
                    self.conn.execute("UPDATE siem_alerts SET updated_at=? WHERE alert_id=?", (now, alert_id))
        return touched

    # ---- reading and triage ----

    def _to_alert(self, row: tuple[Any, ...]) -> Alert:
        (
            alert_id,
            rule_id,
            rule_name,
            rule_title,
            rule_type,
            level,
            group_json,
            ws,
            we,
            first_ts,
            last_ts,
            metric,
            status,
            created_at,
            updated_at,
            explanation,
        ) = row
        (count,) = self.conn.execute(
            "SELECT COUNT(*) FROM siem_alert_evidence WHERE alert_id=?", (alert_id,)
        ).fetchone()
        evidence = [
            r[0]
            for r in self.conn.execute(
                "SELECT event_id FROM siem_alert_evidence WHERE alert_id=? ORDER BY ts, event_id LIMIT ?",
                (alert_id, self.evidence_cap),
            )
        ]
        return Alert(
            alert_id=alert_id,
            rule_id=rule_id,
            rule_name=rule_name,
            rule_title=rule_title,
            rule_type=rule_type,
            level=level,
            group_keys=json.loads(group_json),
            window_start=iso(ws),
            window_end=iso(we),
            first_seen=iso(first_ts),
            last_seen=iso(last_ts),
            event_count=count,
            evidence=evidence,
            metric=metric,
            status=status,
            created_at=created_at,
            updated_at=updated_at,
            explanation=explanation,
        )

    _COLS = (
        "alert_id, rule_id, rule_name, rule_title, rule_type, level, group_json, window_start, window_end, "
        "first_ts, last_ts, metric, status, created_at, updated_at, explanation"
    )

    def list(self, status: str | None = None, rule_id: str | None = None, limit: int | None = None) -> list[Alert]:
        if status is not None and status not in STATUSES:
            raise SiemError(f"status must be one of {', '.join(STATUSES)}")
        sql = f"SELECT {self._COLS} FROM siem_alerts WHERE 1"  # noqa: S608
        args: list[Any] = []
        if status:
            sql += " AND status=?"
            args.append(status)
        if rule_id:
            sql += " AND rule_id=?"
            args.append(rule_id)
        sql += " ORDER BY first_ts, alert_id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._to_alert(r) for r in self.conn.execute(sql, args).fetchall()]

    def get(self, alert_id: str) -> Alert:
        row = self.conn.execute(f"SELECT {self._COLS} FROM siem_alerts WHERE alert_id=?", (alert_id,)).fetchone()  # noqa: S608
        if row is None:
            raise AlertNotFound(alert_id)
        return self._to_alert(row)

    def set_status(self, alert_id: str, status: str, *, actor: str, subjects: set[str] | None = None,
                   comment: str | None = None) -> Alert:
        """Change an alert's status as ``actor``, recorded in the alert's history (same transaction).

        ``subjects`` are the people the alert concerns (see :func:`alert_subjects`); when the actor
        is one of them the change is marked ``self_review`` (a rule watches for it)."""
        if status not in STATUSES:
            raise SiemError(f"status must be one of {', '.join(STATUSES)}")
        before = self.get(alert_id)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        kind = {"acknowledged": "alert.acknowledge", "closed": "alert.close", "open": "alert.reopen"}[status]
        with self._transaction():
            self.conn.execute("UPDATE siem_alerts SET status=?, updated_at=? WHERE alert_id=?",
                              (status, now, alert_id))
            self._history(kind, actor, before, now, before.status, status, subjects, comment)
        return self.get(alert_id)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (the connection is in autocommit mode; the engine's run may hold one)."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def comment(self, alert_id: str, text: str, *, actor: str, subjects: set[str] | None = None) -> None:
        """Add a comment (1–2000 characters, screened for raw personal identifiers) to the history."""
        text = screen_comment(text)
        alert = self.get(alert_id)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        with self._transaction():
            self._history("alert.comment", actor, alert, now, None, None, subjects, text)

    def _history(self, kind: str, actor: str, alert: Alert, now: str, old: str | None, new: str | None,
                 subjects: set[str] | None, comment: str | None) -> None:
        self.conn.execute(
            "INSERT INTO siem_alert_history (event_id, time, type, actor, alert_id, rule_id, level, from_status,"
            " to_status, self_review, comment) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (str(uuid_utils.uuid7()), now, kind, actor, alert.alert_id, alert.rule_id, alert.level, old, new,
             int(actor.lower() in {s.lower() for s in subjects or ()}), comment))

    def history(self, alert_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT time, type, actor, from_status, to_status, self_review, comment FROM siem_alert_history"
            " WHERE alert_id=? ORDER BY seq", (alert_id,)).fetchall()
        return [{"time": r[0], "type": r[1], "actor": r[2], "from_status": r[3], "to_status": r[4],
                 "self_review": bool(r[5]), "comment": r[6]} for r in rows]

    def events_after(self, cursor: str | int | None, limit: int = 50_000) -> tuple[list[dict], int | None]:
        """History entries as alert administration events (contracts.alert_event), for the SIEM itself."""
        after = int(cursor or 0)
        rows = self.conn.execute(
            "SELECT seq, event_id, time, type, actor, alert_id, rule_id, level, from_status, to_status, self_review"
            " FROM siem_alert_history WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        events = [{"event_id": r[1], "time": r[2], "type": r[3], "actor": r[4], "alert_id": r[5], "rule_id": r[6],
                   "level": r[7], "from_status": r[8], "to_status": r[9], "self_review": bool(r[10])} for r in rows]
        return events, (rows[-1][0] if rows else (after or None))

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM siem_alerts").fetchone()[0])


class ElasticAlertSink:
    """Appends alert states to the ``ztcp-alerts`` data stream (one document per change)."""

    DATA_STREAM = "ztcp-alerts"

    def __init__(self, client: Any, data_stream: str = DATA_STREAM) -> None:
        self.client = client
        self.data_stream = data_stream
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        name = f"{self.data_stream}-template"
        if not self.client.indices.exists_index_template(name=name):
            self.client.indices.put_index_template(
                name=name,
                index_patterns=[f"{self.data_stream}*"],
                data_stream={},
                priority=200,
                template={
                    "mappings": {
                        "properties": {
                            "@timestamp": {"type": "date"},
                            "alert_id": {"type": "keyword"},
                            "rule_id": {"type": "keyword"},
                            "level": {"type": "keyword"},
                            "status": {"type": "keyword"},
                            "evidence": {"type": "keyword"},
                            "group_keys": {"type": "flattened"},
                        }
                    }
                },
            )
        self._ready = True

    def publish(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        from elasticsearch import helpers

        self._ensure()
        actions = [
            {
                "_op_type": "create",
                "_index": self.data_stream,
                "_source": {"@timestamp": a.updated_at, "risk_score": RISK_SCORE.get(a.level, 21), **a.model_dump()},
            }
            for a in alerts
        ]
        ok, errors = helpers.bulk(self.client, actions, raise_on_error=False, refresh="wait_for")
        if errors:
            raise SiemError(f"{len(errors)} alert document(s) refused by Elasticsearch")
