"""Alerts: the model, the SQLite driver of the alert store (see alert_backend), and sinks.

An alert is one *episode* of a rule for one set of group keys: evidence that keeps arriving
within the rule's window (correlations) or suppression gap (detections) extends the same alert
instead of opening a new one, whichever run it arrives in. Alert ids are derived from the rule,
the group keys and the first evidence event, so one full run and many incremental runs over
the same events give the same alerts.

Alerts carry only references (actor ids, ``citizen_ref``, event ids), never personal values.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from contracts.log_chain import GENESIS, link
from contracts.screen import screen_text

from .alert_backend import HISTORY_FIELDS, STATUSES, ChainedAlertStore
from .errors import SiemError

Status = Literal["open", "acknowledged", "closed"]
__all__ = ["STATUSES", "Alert", "AlertSink", "AlertStore", "ElasticAlertSink", "Hit", "alert_subjects", "iso"]
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


def alert_subjects(alert: Alert, evidence_rows: Sequence[Mapping[str, Any]] = ()) -> set[str]:
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
    # Every change of an alert — created, extended by a run, triaged by the SOC — in one hash chain
    # (see alert_backend). Triage rows are read back by the SIEM as events of kind "alert" (seq is
    # their cursor).
    """CREATE TABLE IF NOT EXISTS siem_alert_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
        type TEXT NOT NULL, actor TEXT NOT NULL, alert_id TEXT NOT NULL, rule_id TEXT NOT NULL,
        level TEXT NOT NULL, from_status TEXT, to_status TEXT, self_review INTEGER NOT NULL,
        comment TEXT)""",
    "CREATE INDEX IF NOT EXISTS siem_alert_history_alert ON siem_alert_history(alert_id, seq)",
    """CREATE TABLE IF NOT EXISTS siem_alert_evidence (
        alert_id TEXT NOT NULL, event_id TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (alert_id, event_id))
        WITHOUT ROWID""",
    # Which alerts an event is already evidence of: re-processed events are not alerted twice.
    "CREATE INDEX IF NOT EXISTS siem_alert_evidence_event ON siem_alert_evidence(event_id)",
]


class AlertStore(ChainedAlertStore):
    """The SQLite driver: alerts in ``siem.db`` beside the events, on the engine's own connection
    (so a rule's alerts and its watermark commit in one transaction)."""

    def __init__(self, conn: sqlite3.Connection, evidence_cap: int = 500) -> None:
        self.conn = conn
        self.evidence_cap = evidence_cap
        for stmt in _SCHEMA:
            conn.execute(stmt)
        # Stores made before analytics explained themselves, or before the history was chained,
        # get the columns in place (NULL = none).
        for table, column, sqltype in (("siem_alerts", "explanation", "TEXT"), ("siem_alert_history", "detail", "TEXT"),
                                       ("siem_alert_history", "link", "BLOB")):
            cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in cols:
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sqltype}")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'siem_alert_chain'").fetchone() is None:
            self._adopt_history()

    def _adopt_history(self) -> None:
        """Create the chain head; history written before the chain existed is linked now, in order
        (from then on it is as tamper-evident as the rest)."""
        with self.transaction():
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS siem_alert_chain (id INTEGER PRIMARY KEY CHECK (id = 1), "
                "seq INTEGER NOT NULL, link BLOB NOT NULL, prune_seq INTEGER NOT NULL, prune_link BLOB NOT NULL)")
            if self.conn.execute("SELECT 1 FROM siem_alert_chain").fetchone() is not None:
                return  # another process adopted it first
            previous, seq = GENESIS, 0
            rows = self.conn.execute(
                f"SELECT {', '.join(HISTORY_FIELDS)} FROM siem_alert_history ORDER BY seq").fetchall()  # noqa: S608
            for r in rows:
                record = dict(zip(HISTORY_FIELDS, r, strict=True))
                previous, seq = link(previous, record), int(record["seq"])
                self.conn.execute("UPDATE siem_alert_history SET link = ? WHERE seq = ?", (previous, seq))
            self.conn.execute("INSERT INTO siem_alert_chain VALUES (1, ?, ?, 0, ?)", (seq, previous, GENESIS))

    # ---- driver primitives ----

    def _q(self, sql: str, args: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        return self.conn.execute(sql, tuple(args)).fetchall()

    def _x(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(args)).rowcount

    def _xm(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self.conn.executemany(sql, rows).rowcount if rows else 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
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

    _transaction = transaction

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A consistent read (WAL: a read transaction sees one commit state throughout)."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


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
        if errors:  # the refused actions (a count only with stats_only=True, which is not asked for)
            refused = errors if isinstance(errors, int) else len(errors)
            raise SiemError(f"{refused} alert document(s) refused by Elasticsearch")
