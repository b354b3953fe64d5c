"""The durable delivery backlog (``ZTCP_HOME/delivery.db``) and the loop that empties it.

What goes out:

* **Alert notifications**: every alert when it is created and at every status change
  (acknowledged, closed, reopened). They are read from the alert store's history (creations and
  status changes, one cursor: its ``seq``; see ``AlertBackend.changes_after``) and written to the outbox
  once per channel, keyed ``alert_id:status:change``: ``INSERT OR IGNORE`` on that key is the
  de-duplication, and it survives restarts (the cursors move in the same transaction as the rows).
* **Escalations**: a critical alert still *open* (unacknowledged) ``escalate_after`` seconds after it
  was raised or reopened gets a second notification to the escalation recipients, once per opening.
* **Decisions** (syslog only, when configured): read from the decision log itself with a cursor
  kept here; the decision log is the durable backlog, so nothing is copied.

Each channel is delivered in order (``seq``). A transient failure stops the channel until its
backoff (2 s doubling to 5 min) has passed, and the same message is tried again; a permanent one
marks the message failed and the channel goes on. All of it runs in its own thread (or on the SIEM
scheduler's tick), never on a request path: a dead receiver grows the backlog, shown in
``/readyz``, and never delays a decision or a rule run.

Email and webhook notifications carry the alert id, rule, level, status, counts and a console link
only — nothing about who or whom. Syslog, the SOC's own feed, carries the alert's group keys
(references) and its explanation as well.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..alert_backend import AlertBackend
from ..alerts import RISK_SCORE, AlertStore
from .channels import DeliveryError, EmailChannel, SyslogTarget, WebhookChannel
from .formats import alert_message, decision_message

log = logging.getLogger(__name__)
LEVELS = ("informational", "low", "medium", "high", "critical")
BACKOFF_START, BACKOFF_CAP = 2.0, 300.0
SYSLOG, EMAIL, WEBHOOK, ESCALATION = "syslog", "email", "webhook", "escalation"
CHANNELS = (SYSLOG, EMAIL, WEBHOOK, ESCALATION)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS delivery_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, dedup TEXT NOT NULL,
        alert_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, payload TEXT NOT NULL,
        created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'pending',
        delivered_at REAL, last_error TEXT, UNIQUE (channel, dedup))""",
    "CREATE INDEX IF NOT EXISTS delivery_outbox_pending ON delivery_outbox(channel, state, seq)",
    "CREATE INDEX IF NOT EXISTS delivery_outbox_alert ON delivery_outbox(alert_id)",
    "CREATE TABLE IF NOT EXISTS delivery_cursor (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS delivery_channel (
        name TEXT PRIMARY KEY, failures INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,
        last_ok REAL, last_error TEXT, last_error_at REAL, delivered INTEGER NOT NULL DEFAULT 0)""",
]


def connect_outbox(path: Path | str) -> sqlite3.Connection:
    p = Path(path)
    if str(path) != ":memory:" and not p.exists():
        import os

        p.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for stmt in _SCHEMA:
        conn.execute(stmt)
    # The alert history seq a notification stands for (NULL: escalations, rows from before): what
    # the shared "delivered through" mark is computed from.
    if "hseq" not in {r[1] for r in conn.execute("PRAGMA table_info(delivery_outbox)")}:
        with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
            conn.execute("ALTER TABLE delivery_outbox ADD COLUMN hseq INTEGER")
    return conn


@contextlib.contextmanager
def _tx(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if ts else None


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class DecisionFeed:
    """The decision log, as delivery reads it: ``events_after(cursor, limit) -> (entries, cursor)``
    (the SIEM source interface), ``last()`` its newest position and ``pending(cursor)`` how many
    entries lie after a position. Where forwarding starts: at the log's end when first configured
    (a SOC wants decisions from now on, not a flood of history)."""

    events_after: Callable[[int, int], tuple[list[dict[str, Any]], int | None]]
    last: Callable[[], int]
    pending: Callable[[int], int]


@dataclass
class DeliveryConfig:
    console_url: str  # base, e.g. https://ztcp.bureau.example/console
    syslog: SyslogTarget | None = None
    syslog_format: str = "ecs"  # ecs | cef
    syslog_facility: str = "local0"
    syslog_decisions: bool = False
    email: EmailChannel | None = None
    webhook: WebhookChannel | None = None
    escalation: EmailChannel | None = None
    escalate_after: float = 1800.0
    min_level: str = "high"  # email and webhook: alerts at least this severe (syslog gets all)
    batch: int = 500
    channels_present: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.syslog_format not in ("ecs", "cef"):
            raise ValueError("syslog format must be ecs or cef")
        if self.min_level not in LEVELS:
            raise ValueError(f"alert level must be one of {', '.join(LEVELS)}")
        self.channels_present = [name for name, ch in ((SYSLOG, self.syslog), (EMAIL, self.email),
                                                       (WEBHOOK, self.webhook), (ESCALATION, self.escalation))
                                 if ch is not None]

    @property
    def configured(self) -> bool:
        return bool(self.channels_present)


class Delivery:
    """One pass (``tick``) reads what is new in the SIEM store and delivers what is due.

    ``alerts`` is the alert store (:class:`siem_rules.AlertBackend`; a connection to ``siem.db`` is
    taken as its SQLite driver), only read; ``conn`` the outbox.
    ``clock`` is injectable so escalation and backoff can be tested without waiting."""

    def __init__(self, conn: sqlite3.Connection, alerts: AlertBackend | sqlite3.Connection, config: DeliveryConfig,
                 decisions: DecisionFeed | None = None, clock: Callable[[], float] = time.time) -> None:
        self.conn = conn
        self.alerts: AlertBackend = AlertStore(alerts) if isinstance(alerts, sqlite3.Connection) else alerts
        self.config = config
        self.decisions = decisions if (config.syslog is not None and config.syslog_decisions) else None
        self.clock = clock
        self._lock = threading.Lock()

    # ---- enqueue -------------------------------------------------------------------------------

    def _cursor(self, name: str) -> int | None:
        row = self.conn.execute("SELECT value FROM delivery_cursor WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else None

    def _set_cursor(self, name: str, value: int) -> None:
        self.conn.execute("INSERT INTO delivery_cursor(name, value) VALUES (?,?) ON CONFLICT(name) DO UPDATE "
                          "SET value=excluded.value", (name, value))

    def _alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self.alerts.alert_row(alert_id)
        if row is None:
            return None
        return {
            "alert_id": row["alert_id"], "rule_id": row["rule_id"], "rule_name": row["rule_name"],
            "rule_title": row["rule_title"], "rule_type": row["rule_type"], "level": row["level"],
            "group_keys": json.loads(row["group_json"]), "window_start": _iso(row["window_start"]),
            "window_end": _iso(row["window_end"]), "first_seen": _iso(row["first_ts"]),
            "last_seen": _iso(row["last_ts"]), "status": row["status"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "event_count": int(row["event_count"]),
            "explanation": row["explanation"],
            "console_url": f"{self.config.console_url.rstrip('/')}/alerts/{row['alert_id']}",
        }

    @staticmethod
    def notification(alert: dict[str, Any], kind: str, status: str) -> dict[str, Any]:
        """What email and webhooks say: no group keys, no explanation, nothing about anyone."""
        return {"kind": kind, "alert_id": alert["alert_id"], "rule": alert["rule_name"], "title": alert["rule_title"],
                "level": alert["level"], "risk_score": RISK_SCORE.get(alert["level"], 21), "status": status,
                "event_count": alert["event_count"], "console_url": alert["console_url"],
                "first_seen": alert["first_seen"], "last_seen": alert["last_seen"]}

    def _enqueue(self, alert: dict[str, Any], status: str, change: int, now: float, hseq: int | None = None) -> int:
        added = 0
        dedup = f"{alert['alert_id']}:{status}:{change}"
        wants_notice = LEVELS.index(alert["level"]) >= LEVELS.index(self.config.min_level) \
            if alert["level"] in LEVELS else True
        for channel in (SYSLOG, EMAIL, WEBHOOK):
            if channel not in self.config.channels_present or (channel != SYSLOG and not wants_notice):
                continue
            payload = {**alert, "status": status} if channel == SYSLOG else self.notification(alert, "alert", status)
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO delivery_outbox(channel, dedup, alert_id, kind, status, payload, created_at, "
                "hseq) VALUES (?,?,?,?,?,?,?,?)", (channel, dedup, alert["alert_id"], "alert", status,
                                                   json.dumps(payload, sort_keys=True), now, hseq))
            added += cur.rowcount
        return added

    def enqueue(self) -> int:
        """New alerts and status changes since the cursor (the alert history's ``seq``) → outbox rows
        (once per channel)."""
        now = self.clock()
        added = 0
        start = self._cursor("alerts.history")
        if start is None:
            # A new backlog (first start, or a replica that just became the cluster's leader): begin
            # where the cluster's deliveries stand, not at the start of the shared history.
            start = self.alerts.delivery_mark() or 0
        changes = self.alerts.changes_after(start, 5000)
        with _tx(self.conn):
            hist = start
            for seq, alert_id, status in changes:
                if status:  # comments and extensions change nothing to deliver
                    alert = self._alert(alert_id)
                    if alert is not None:
                        added += self._enqueue(alert, "open", 0, now, seq) if status == "created" else \
                            self._enqueue(alert, status, seq, now, seq)
                hist = max(hist, seq)
            self._set_cursor("alerts.history", hist)
            if self.config.escalation is not None:
                added += self._escalations(now)
        return added

    def _escalations(self, now: float) -> int:
        added = 0
        for alert_id, opened_at, change in self.alerts.open_critical():
            opened = _epoch(opened_at)
            if now - opened < self.config.escalate_after:
                continue
            alert = self._alert(alert_id)
            if alert is None:
                continue
            payload = self.notification(alert, "escalation", "open")
            payload["unacknowledged_minutes"] = int((now - opened) // 60)
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO delivery_outbox(channel, dedup, alert_id, kind, status, payload, created_at) "
                "VALUES (?,?,?,?,?,?,?)", (ESCALATION, f"{alert_id}:escalate:{change}", alert_id, "escalation", "open",
                                           json.dumps(payload, sort_keys=True), now))
            added += cur.rowcount
        return added

    # ---- deliver -------------------------------------------------------------------------------

    def _channel_due(self, name: str, now: float) -> bool:
        row = self.conn.execute("SELECT next_try FROM delivery_channel WHERE name=?", (name,)).fetchone()
        return row is None or row[0] <= now

    def _ok(self, name: str, n: int, now: float) -> None:
        self.conn.execute(
            "INSERT INTO delivery_channel(name, failures, next_try, last_ok, delivered) VALUES (?,0,0,?,?) "
            "ON CONFLICT(name) DO UPDATE SET failures=0, next_try=0, last_ok=excluded.last_ok, "
            "delivered=delivered+excluded.delivered", (name, now, n))

    def _failed(self, name: str, reason: str, now: float, backoff: bool) -> None:
        row = self.conn.execute("SELECT failures FROM delivery_channel WHERE name=?", (name,)).fetchone()
        failures = (row[0] if row else 0) + (1 if backoff else 0)
        wait = min(BACKOFF_CAP, BACKOFF_START * 2 ** max(failures - 1, 0)) if backoff else 0.0
        self.conn.execute(
            "INSERT INTO delivery_channel(name, failures, next_try, last_error, last_error_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET failures=excluded.failures, next_try=excluded.next_try, "
            "last_error=excluded.last_error, last_error_at=excluded.last_error_at",
            (name, failures, now + wait, reason, now))
        log.warning("delivery %s: %s%s", name, reason, f" (retry in {wait:.0f} s)" if backoff else "")

    def deliver(self) -> dict[str, int]:
        """Deliver what is due on every channel; returns messages delivered per channel."""
        sent: dict[str, int] = {}
        for name in self.config.channels_present:
            sent[name] = self._deliver_channel(name)
        if self.decisions is not None:
            sent["syslog.decisions"] = self._deliver_decisions()
        return sent

    def _pending(self, name: str, limit: int) -> list[tuple[int, str, str, dict[str, Any], int]]:
        rows = self.conn.execute(
            "SELECT seq, dedup, kind, payload, attempts FROM delivery_outbox WHERE channel=? AND state='pending' "
            "ORDER BY seq LIMIT ?", (name, limit)).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def _deliver_channel(self, name: str) -> int:
        delivered = 0
        while True:
            now = self.clock()
            if not self._channel_due(name, now):
                return delivered
            batch = self._pending(name, self.config.batch if name == SYSLOG else 1)
            if not batch:
                return delivered
            try:
                self._send(name, batch, now)
            except DeliveryError as exc:
                with _tx(self.conn):
                    head = batch[0][0]
                    if exc.permanent:
                        self.conn.execute("UPDATE delivery_outbox SET state='failed', attempts=attempts+1, "
                                          "last_error=? WHERE seq=?", (exc.reason, head))
                    else:
                        self.conn.executemany("UPDATE delivery_outbox SET attempts=attempts+1, last_error=? "
                                              "WHERE seq=?", [(exc.reason, b[0]) for b in batch])
                    self._failed(name, exc.reason, now, backoff=not exc.permanent)
                if not exc.permanent:
                    return delivered
                continue
            except Exception as exc:  # a bug in formatting must not wedge the loop: count it as transient
                with _tx(self.conn):
                    self._failed(name, f"internal error ({type(exc).__name__})", now, backoff=True)
                return delivered
            with _tx(self.conn):
                self.conn.executemany("UPDATE delivery_outbox SET state='delivered', delivered_at=?, "
                                      "attempts=attempts+1, last_error=NULL WHERE seq=?", [(now, b[0]) for b in batch])
                self._ok(name, len(batch), now)
            delivered += len(batch)

    def _send(self, name: str, batch: list[tuple[int, str, str, dict[str, Any], int]], now: float) -> None:
        cfg = self.config
        if name == SYSLOG:
            assert cfg.syslog is not None
            cfg.syslog.send([alert_message(p, cfg.syslog_format, cfg.syslog_facility) for *_, p, _ in batch])
            return
        _, dedup, kind, payload, _ = batch[0]
        if name == WEBHOOK:
            assert cfg.webhook is not None
            # The delivery id is stable across retries: receivers can drop a duplicate by it.
            cfg.webhook.send(payload, hashlib.sha256(f"{name}|{dedup}".encode()).hexdigest()[:32], now=now)
            return
        channel = cfg.email if name == EMAIL else cfg.escalation
        assert channel is not None
        subject, body = email_text(payload)
        channel.send(subject, body, {"X-Ztcp-Alert-Id": payload["alert_id"]})

    def _deliver_decisions(self) -> int:
        assert self.decisions is not None and self.config.syslog is not None
        name = "syslog.decisions"
        delivered = 0
        cursor = self._cursor("decisions")
        if cursor is None:
            with _tx(self.conn):
                self._set_cursor("decisions", int(self.decisions.last()))
            return 0
        while True:
            now = self.clock()
            if not self._channel_due(name, now):
                return delivered
            entries, new_cursor = self.decisions.events_after(cursor, self.config.batch)
            if not entries:
                return delivered
            try:
                self.config.syslog.send([decision_message(e, self.config.syslog_format, self.config.syslog_facility)
                                         for e in entries])
            except DeliveryError as exc:
                with _tx(self.conn):
                    self._failed(name, exc.reason, now, backoff=True)
                return delivered
            cursor = int(new_cursor or cursor)
            with _tx(self.conn):
                self._set_cursor("decisions", cursor)
                self._ok(name, len(entries), now)
            delivered += len(entries)

    def tick(self) -> dict[str, int]:
        with self._lock:
            self.enqueue()
            sent = self.deliver()
            if self.alerts.shared:
                self.alerts.set_delivery_mark(self.delivered_through())
            return sent

    def delivered_through(self) -> int:
        """The alert history seq up to which every change is delivered (or failed for good) on every
        channel: the oldest pending notification's seq - 1, or the enqueue cursor when none waits."""
        row = self.conn.execute("SELECT MIN(hseq) FROM delivery_outbox WHERE state = 'pending' AND hseq IS NOT NULL"
                                ).fetchone()
        cursor = self._cursor("alerts.history") or 0
        return min(cursor, int(row[0]) - 1) if row[0] is not None else cursor

    # ---- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per channel: backlog, failed messages, last success and last error (for ``/readyz``)."""
        return channel_status(self.conn, self.config, self.decisions)

    @staticmethod
    def alert_status(conn: sqlite3.Connection, alert_ids: list[str]) -> dict[str, dict[str, str]]:
        """Per alert, per channel: the state of its latest notification (``delivered``, ``pending``
        or ``failed``) — the console's delivery column."""
        out: dict[str, dict[str, str]] = {}
        for i in range(0, len(alert_ids), 900):
            chunk = alert_ids[i:i + 900]
            marks = ",".join("?" * len(chunk))
            for alert_id, channel, state, attempts in conn.execute(
                    f"SELECT alert_id, channel, state, attempts FROM delivery_outbox WHERE seq IN (SELECT MAX(seq) "  # noqa: S608
                    f"FROM delivery_outbox WHERE alert_id IN ({marks}) GROUP BY alert_id, channel)", chunk):
                out.setdefault(alert_id, {})[channel] = "retrying" if state == "pending" and attempts else state
        return out


def channel_status(conn: sqlite3.Connection, config: DeliveryConfig,
                   decisions: DecisionFeed | None = None) -> dict[str, Any]:
    """Per channel: backlog, failed messages, last success and last error. Read on a connection of
    the caller's own (readiness runs in the server's threads, delivery in its own)."""
    out: dict[str, Any] = {}
    if not (config.syslog is not None and config.syslog_decisions):
        decisions = None
    names = list(config.channels_present) + (["syslog.decisions"] if decisions is not None else [])
    state = {r[0]: r[1:] for r in conn.execute(
        "SELECT name, failures, next_try, last_ok, last_error, last_error_at, delivered FROM delivery_channel")}
    counts: dict[tuple[str, str], int] = {(r[0], r[1]): r[2] for r in conn.execute(
        "SELECT channel, state, COUNT(*) FROM delivery_outbox WHERE state != 'delivered' GROUP BY channel, state")}
    for name in names:
        failures, next_try, last_ok, last_error, last_error_at, delivered = state.get(name, (0, 0, None, None, None, 0))
        if name == "syslog.decisions":
            row = conn.execute("SELECT value FROM delivery_cursor WHERE name='decisions'").fetchone()
            backlog = decisions.pending(int(row[0])) if (decisions is not None and row is not None) else 0
            failed = 0
        else:
            backlog, failed = counts.get((name, "pending"), 0), counts.get((name, "failed"), 0)
        out[name] = {"ok": failures == 0, "backlog": backlog, "failed": failed, "delivered": delivered,
                     "last_ok": _iso(last_ok), "last_error": last_error if failures or failed else None,
                     "last_error_at": _iso(last_error_at) if failures or failed else None,
                     "retry_at": _iso(next_try) if failures else None}
    return out


def email_text(n: dict[str, Any]) -> tuple[str, str]:
    """Subject and body of an alert email: ids, rule, level, status, counts and the console link only."""
    level = str(n["level"]).upper()
    if n["kind"] == "escalation":
        subject = f"[ztcp] ESCALATION: {level} alert {n['rule']} unacknowledged for {n['unacknowledged_minutes']} min"
        lead = f"This {n['level']} alert is still open, unacknowledged, {n['unacknowledged_minutes']} minutes after " \
               "it was raised. Please acknowledge it in the console."
    else:
        subject = f"[ztcp] {level} alert {n['rule']} {n['status']} ({n['alert_id']})"
        lead = f"An alert is now {n['status']}."
    body = "\n".join([
        lead, "",
        f"Alert:   {n['alert_id']}",
        f"Rule:    {n['rule']} — {n['title']}",
        f"Level:   {n['level']}",
        f"Status:  {n['status']}",
        f"Events:  {n['event_count']}",
        f"Seen:    {n['first_seen']} to {n['last_seen']}",
        "",
        f"Console: {n['console_url']}",
        "",
        "Details stay in the console (sign-in required); this message carries no personal data.",
    ])
    return subject, body


class DeliveryThread:
    """Runs ``Delivery.tick`` every ``interval`` seconds in a daemon thread (``wake()`` runs it now,
    e.g. right after a SIEM run). ``delivery_factory`` is called inside the thread: SQLite
    connections belong to the thread that uses them."""

    def __init__(self, delivery_factory: Callable[[], Delivery], interval: float = 10.0,
                 gate: Callable[[], bool] | None = None) -> None:
        self.delivery_factory = delivery_factory
        self.interval = interval
        self.gate = gate  # as the SIEM scheduler's: only the cluster's leader delivers
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivery: Delivery | None = None
        self.last_error: str | None = None
        self.ticks = 0

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ztcp-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.gate is not None and not self.gate():
                self._stop.wait(min(self.interval, 1.0))
                continue
            try:
                if self.delivery is None:
                    self.delivery = self.delivery_factory()
                self.delivery.tick()
                self.last_error = None
            except Exception as exc:  # keep going; the error is shown in /readyz
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("delivery tick failed: %s", self.last_error)
            self.ticks += 1
            self._wake.wait(self.interval)
            self._wake.clear()
        if self.delivery is not None:
            for close in (self.delivery.conn.close, self.delivery.alerts.close):
                with contextlib.suppress(Exception):
                    close()
