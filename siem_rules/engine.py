"""The engine: ingest from sources, run the rule pack incrementally, merge alerts, publish them.

Incremental runs: every rule keeps a watermark per event kind (the highest ``rid`` it has
evaluated). A run snapshots the current high-water marks, then per rule

* detection: evaluates its predicate over ``watermark < rid <= high`` (a primary-key range);
* correlation: finds the earliest new matching event ``t0`` and fetches matching rows with
  ``ts >= t0 - timespan`` (the ``ts`` index), anchoring windows only at ``ts >= t0``;
* analytic: reads the new range and its own small state.

So the work of a run is proportional to new events plus one window of lookback, not to history.
Watermarks, alerts and evidence are committed together per rule: a crash mid-run re-evaluates
that rule next time, and deduplication makes that harmless.

With a shared alert store (PostgreSQL, ``ZTCP_DATABASE_URL``) the watermarks live there too, with
the newest event time each covered and the SIEM store (``instance``) that wrote them. A ``rid`` is
only meaningful in the siem.db that assigned it, so a replica that takes over as scheduler leader
(its own siem.db, filled from the same sources) starts each rule at its first event not older than
the watermark's time minus the pack's longest window: correlations spanning the takeover still see
their whole window, and what the old leader already alerted on merges into the same alerts (their
ids are deterministic) instead of raising new ones.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .alert_backend import AlertBackend, Watermark
from .alerts import AlertSink, AlertStore, Hit
from .analytics import ANALYTICS
from .config import SiemConfig
from .correlate import Row, evaluate
from .errors import SiemError
from .events import KINDS, column_of
from .rulepack import AlertingRule, RulePack
from .sources import Source
from .store import TABLE, EventStore, paused_gc, transaction

log = logging.getLogger(__name__)
_ANALYTICS = {a.name: a for a in ANALYTICS}


@dataclass
class RuleRun:
    rule_id: str
    name: str
    seconds: float
    rows: int
    hits: int
    alerts: int


@dataclass
class RunReport:
    started_at: str
    seconds: float = 0.0
    rules: list[RuleRun] = field(default_factory=list)
    alerts_touched: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "seconds": round(self.seconds, 4),
            "alerts_touched": len(self.alerts_touched),
            "rules": [r.__dict__ | {"seconds": round(r.seconds, 4)} for r in self.rules],
        }


class Engine:
    """One SIEM database (events, watermarks, alerts) and one compiled rule pack."""

    def __init__(
        self, conn: sqlite3.Connection, pack: RulePack | None = None, sinks: list[AlertSink] | None = None,
        alerts: AlertBackend | None = None,
    ) -> None:
        self.conn = conn
        self.pack = pack or RulePack()
        self.config: SiemConfig = self.pack.config
        self.store = EventStore(conn, self.config.timezone)
        # The alert store: this siem.db (default) or a shared one (PostgreSQL) given by the caller.
        self.alerts: AlertBackend = alerts if alerts is not None else AlertStore(conn, self.config.evidence_cap)
        self.sinks = list(sinks or [])
        self._lock = threading.Lock()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS siem_watermarks (rule_id TEXT NOT NULL, kind TEXT NOT NULL, "
            "rid INTEGER NOT NULL, PRIMARY KEY (rule_id, kind)) WITHOUT ROWID"
        )
        # Which siem.db this is (its rids mean nothing elsewhere): named once, at creation.
        conn.execute("CREATE TABLE IF NOT EXISTS siem_instance (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT)")
        pending = conn.in_transaction
        conn.execute("INSERT OR IGNORE INTO siem_instance VALUES (1, ?)", (uuid.uuid4().hex,))
        if conn.in_transaction and not pending:  # a connection in sqlite3's legacy mode opened one
            conn.commit()
        self.instance: str = conn.execute("SELECT name FROM siem_instance").fetchone()[0]
        # How far back a rule can look from one event: its correlation window or suppression gap.
        self.lookback = float(max([0, *(r.correlation.timespan for r in self.pack.rules if r.correlation is not None),
                                   *(r.suppress_seconds for r in self.pack.rules)]))
        for a in ANALYTICS:
            a.init(conn)

    def close(self) -> None:
        """Close the SIEM store and, when it is its own (shared) one, the alert store."""
        self.conn.close()
        if self.alerts.shared:
            self.alerts.close()

    # ---- ingestion ----

    def ingest(self, sources: list[Source]) -> int:
        """Pull every source until it has nothing new; returns the number of events stored."""
        total = 0
        for src in sources:
            while True:
                cursor = self.store.cursor(src.name)
                batch, new_cursor = src.iter_since(cursor)
                if not batch:
                    if new_cursor is not None and new_cursor != cursor:
                        self.store.ingest([], cursor=(src.name, new_cursor))
                    break
                try:
                    total += self.store.ingest(
                        batch,
                        cursor=(src.name, new_cursor or ""),
                        where=src.name,
                        check=not getattr(src, "validated", False),
                    )
                except SiemError:
                    if not getattr(src, "quarantine", False):
                        raise  # files given by a person: refuse the batch and say where
                    added, bad = self.store.ingest_skipping_bad(batch, cursor=(src.name, new_cursor or ""),
                                                                where=src.name)
                    total += added
                    log.warning("siem: %d malformed event(s) from %s quarantined (see siem_quarantine)",
                                bad, src.name)
        return total

    # ---- running ----

    def run(
        self,
        rules: list[AlertingRule] | None = None,
        since: datetime | None = None,
        on_rule: Any = None,
    ) -> RunReport:
        """Evaluate the pack. ``since`` ignores watermarks and re-evaluates events from that time;
        ``on_rule(rule_run)`` is called after each rule (progress display)."""
        with self._lock:
            started = time.perf_counter()
            report = RunReport(started_at=_now())
            high = {k: self.store.high_water(k) for k in KINDS}
            newest = {k: self._newest(k) for k in KINDS} if self.alerts.shared else {}
            # Fetched rows are short-lived tuples; cyclic GC passes over a big heap would dominate.
            with paused_gc():
                for rule in rules or self.pack.rules:
                    report.rules.append(self._run_rule(rule, high, since, report, newest))
                    if on_rule is not None:
                        on_rule(report.rules[-1])
            report.seconds = time.perf_counter() - started
        if self.sinks and report.alerts_touched:
            changed = [self.alerts.get(a) for a in sorted(set(report.alerts_touched))]
            for sink in self.sinks:
                try:
                    sink.publish(changed)
                except Exception as exc:  # a down sink must not lose alerts: they stay in SQLite
                    log.warning("alert sink %s failed: %s", type(sink).__name__, exc)
        return report

    def _newest(self, kind: str) -> float:
        row = self.conn.execute(f"SELECT MAX(ts) FROM {TABLE[kind]}").fetchone()  # noqa: S608
        return float(row[0]) if row[0] is not None else 0.0

    def _watermark(self, rule_id: str, kind: str) -> int:
        if self.alerts.shared:
            mark = self.alerts.watermark(rule_id, kind)
            if mark is None:
                return 0
            if mark.instance == self.instance:
                return mark.rid
            # Another replica ran this rule last: restart one window before where it stopped.
            return self._since_ts(kind, mark.ts - self.lookback)
        row = self.conn.execute(
            "SELECT rid FROM siem_watermarks WHERE rule_id=? AND kind=?", (rule_id, kind)
        ).fetchone()
        return int(row[0]) if row else 0

    def _since_rid(self, kind: str, since: datetime) -> int:
        return self._since_ts(kind, since.timestamp())

    def _since_ts(self, kind: str, ts: float) -> int:
        row = self.conn.execute(f"SELECT MIN(rid) FROM {TABLE[kind]} WHERE ts >= ?", (ts,)).fetchone()  # noqa: S608
        return int(row[0]) - 1 if row[0] is not None else self.store.high_water(kind)

    def _run_rule(self, rule: AlertingRule, high: dict[str, int], since: datetime | None, report: RunReport,
                  newest: dict[str, float] | None = None) -> RuleRun:
        t0 = time.perf_counter()
        kinds = rule.kinds
        lo = {k: (self._since_rid(k, since) if since else self._watermark(rule.id, k)) for k in kinds}
        nrows = 0
        with transaction(self.conn):
            if rule.analytic:
                # An analytic sets each hit's merge gap itself (0 unless it says otherwise).
                hits = _ANALYTICS[rule.analytic].evaluate(self.conn, lo[kinds[0]], high[kinds[0]], self.config)
                nrows = len(hits)
            elif rule.detection is not None:
                hits, nrows = self._detect(rule, lo, high)
            else:
                hits, nrows = self._correlate(rule, lo, high)
            if hits and self.alerts.shared:
                self._name_people(hits)
            with self.alerts.transaction():  # the shared store commits alerts and watermarks together
                touched = self.alerts.merge(rule, hits, _now()) if hits else set()
                if self.alerts.shared:
                    self.alerts.save_watermarks(rule.id, {k: Watermark(high[k], (newest or {}).get(k, 0.0),
                                                                       self.instance) for k in kinds})
            for k in kinds:
                self.conn.execute(
                    "INSERT INTO siem_watermarks(rule_id, kind, rid) VALUES (?,?,?) ON CONFLICT(rule_id, kind) "
                    "DO UPDATE SET rid=max(rid, excluded.rid)",
                    (rule.id, k, high[k]),
                )
        report.alerts_touched.extend(touched)
        return RuleRun(rule.id, rule.name, time.perf_counter() - t0, nrows, len(hits), len(touched))

    def _name_people(self, hits: list[Hit]) -> None:
        """For a shared alert store: the people each hit's evidence names (actor, subject), kept with
        the alert, so triage on a replica whose siem.db lacks these events still marks self-review."""
        ids = sorted({eid for h in hits for _, eid in h.evidence})
        named = {row["event_id"]: {str(row[c]) for c in ("actor", "subject_id") if row.get(c)}
                 for _, row in self.store.by_ids(ids)}
        for h in hits:
            h.extra["people"] = set().union(*(named.get(eid, set()) for _, eid in h.evidence))

    # Range scans over new events say NOT INDEXED: the rowid (primary key) range is still used,
    # but the planner may not walk the whole ts index for ORDER BY ts / MIN(ts), which costs time
    # proportional to history when late or back-filled rows make rid and ts order disagree.
    def _detect(self, rule: AlertingRule, lo: dict[str, int], high: dict[str, int]) -> tuple[list[Hit], int]:
        det = rule.detection
        assert det is not None
        cols = [column_of(det.kind, f) for f in rule.suppress_by]
        sel = ", ".join(["ts", "event_id"] + [f'"{c}"' for c in cols])
        sql = (
            f"SELECT {sel} FROM {TABLE[det.kind]} NOT INDEXED "  # noqa: S608
            f"WHERE rid > ? AND rid <= ? AND ({det.predicate}) ORDER BY ts, rid"
        )
        rows = self._query(rule, sql, (lo[det.kind], high[det.kind]))
        gap = float(rule.suppress_seconds)
        if not rule.suppress_by and not gap:
            return [Hit(group={}, window_start=ts, window_end=ts, evidence=[(ts, eid)]) for ts, eid in rows], len(rows)
        # Pre-merge runs of the same group within the gap (the store merges across runs the same way).
        open_: dict[tuple, Hit] = {}
        hits: list[Hit] = []
        for ts, eid, *group in rows:
            key = tuple(g.lower() if isinstance(g, str) else g for g in group)
            h = open_.get(key)
            if h is not None and ts - h.window_end <= gap:
                h.evidence.append((ts, eid))
                h.window_end = ts
            else:
                h = Hit(
                    group=dict(zip(rule.suppress_by, group, strict=True)),
                    window_start=ts,
                    window_end=ts,
                    evidence=[(ts, eid)],
                    gap=gap,
                )
                open_[key] = h
                hits.append(h)
        return hits, len(rows)

    def _correlate(self, rule: AlertingRule, lo: dict[str, int], high: dict[str, int]) -> tuple[list[Hit], int]:
        corr = rule.correlation
        assert corr is not None
        # Earliest new matching event over all referenced detections.
        anchor = None
        for det, _ in corr.refs:
            sql = f"SELECT MIN(ts) FROM {TABLE[det.kind]} NOT INDEXED WHERE rid > ? AND rid <= ? AND ({det.predicate})"  # noqa: S608
            (m,) = self._query(rule, sql, (lo[det.kind], high[det.kind]))[0]
            if m is not None and (anchor is None or m < anchor):
                anchor = m
        if anchor is None:
            return [], 0
        rows: list[Row] = []
        lo_ts = anchor - corr.timespan
        # Lookback is a ts-index range; "+rid" keeps the planner from scanning the rowid range
        # (all history) instead, which it would otherwise prefer without statistics.
        gcols_of = [self._columns(rule, det.kind, [mapping.get(g, g) for g in corr.group_by])
                    for det, mapping in corr.refs]
        # When every referenced rule must match (temporal without a partial condition), a group can
        # only qualify if it occurs in all of them: a semi-join keeps e.g. the millions of ordinary
        # reads out of "read, then unrequested account change" unless that citizen had such a change.
        need_all = (
            corr.type.startswith("temporal")
            and corr.group_by
            and len(corr.refs) > 1
            and (corr.op is None or (corr.op == "gte" and corr.count == len(corr.refs)))
        )
        for slot, (det, mapping) in enumerate(corr.refs):
            gcols = gcols_of[slot]
            vcol = column_of(det.kind, mapping.get(corr.fieldref, corr.fieldref)) if corr.fieldref else None
            sel = ", ".join(["ts", "event_id"] + [f'"{c}"' for c in gcols] + ([f'"{vcol}"'] if vcol else []))
            sql = f"SELECT {sel} FROM {TABLE[det.kind]} WHERE ts >= ? AND +rid <= ? AND ({det.predicate})"  # noqa: S608
            args: list[Any] = [lo_ts, high[det.kind]]
            if need_all:
                for other, (odet, _) in enumerate(corr.refs):
                    if other == slot:
                        continue
                    mine = ", ".join(f'"{c}"' for c in gcols)
                    theirs = ", ".join(f'"{c}"' for c in gcols_of[other])
                    sql += (
                        f" AND ({mine}) IN (SELECT {theirs} FROM {TABLE[odet.kind]} WHERE ts >= ? AND "  # noqa: S608
                        f"+rid <= ? AND ({odet.predicate}))"
                    )
                    args += [lo_ts, high[odet.kind]]
            if self._count_bound_applies(corr) and gcols:
                sql, args = self._hot_groups_only(corr, gcols, vcol, sel, sql, args, anchor)
            ng = len(gcols)
            for rec in self._query(rule, sql, tuple(args)):
                rows.append(Row(rec[0], slot, rec[1], tuple(rec[2 : 2 + ng]), rec[2 + ng] if vcol else None))
        hits = evaluate(corr.type, corr.timespan, len(corr.refs), corr.op, corr.count, rows, corr.group_by, anchor)
        return hits, len(rows)

    @staticmethod
    def _columns(rule: AlertingRule, kind: str, fields: list[str]) -> list[str]:
        """The columns of group-by fields, which the rule pack checked when it was loaded."""
        cols: list[str] = []
        for f in fields:
            col = column_of(kind, f)
            if col is None:
                raise SiemError(f"rule {rule.name}: {f!r} is not a {kind} field")
            cols.append(col)
        return cols

    @staticmethod
    def _count_bound_applies(corr: Any) -> bool:
        """For "at least N" event_count / value_count over one detection, a window can only qualify
        if it holds at least N events (distinct values never outnumber events)."""
        return (
            corr.type in ("event_count", "value_count") and len(corr.refs) == 1 and corr.op in ("gte", "gt")
        )

    @staticmethod
    def _hot_groups_only(
        corr: Any, gcols: list[str], vcol: str | None, sel: str, sql: str, args: list[Any], anchor: float
    ) -> tuple[str, list[Any]]:
        """Keep only groups that can reach the threshold, decided in SQL: count events per group in
        fixed buckets of one timespan; any sliding window lies within two adjacent buckets, so a
        group whose adjacent-bucket sums stay below N cannot qualify. Python then evaluates the exact
        sliding condition on the few remaining groups. (Cheaper than a window function's sort.)"""
        groups = ", ".join(f'"{c}"' for c in gcols)
        present = " AND ".join(f'"{c}" IS NOT NULL' for c in gcols + ([vcol] if vcol else []))
        join = " AND ".join(f'b2."{c}" = b1."{c}"' for c in gcols)
        b1_groups = ", ".join(f'b1."{c}"' for c in gcols)
        span = float(corr.timespan)
        cmp = ">=" if corr.op == "gte" else ">"
        wrapped = (
            f"WITH b AS (SELECT {groups}, CAST(ts / {span} AS INTEGER) AS k, COUNT(*) AS n "  # noqa: S608
            f"FROM ({sql} AND {present}) GROUP BY {groups}, k), "
            f"hot AS (SELECT DISTINCT {b1_groups} FROM b b1 LEFT JOIN b b2 ON {join} AND b2.k = b1.k - 1 "
            f"WHERE b1.n + COALESCE(b2.n, 0) {cmp} ? AND b1.k >= CAST(? / {span} AS INTEGER)) "
            f"SELECT * FROM ({sql}) WHERE ({groups}) IN (SELECT {groups} FROM hot)"
        )
        return wrapped, [*args, corr.count, anchor, *args]

    def _query(self, rule: AlertingRule, sql: str, args: tuple) -> list[tuple]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise SiemError(f"rule {rule.name}: query failed: {exc}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Scheduler:
    """Runs ``ingest`` + the pack every ``interval`` seconds in a daemon thread (for ``ztcp serve``).

    ``engine_factory`` is called inside the thread (SQLite connections belong to one thread);
    ``sources`` are pulled before each run. Errors are logged and the next tick tries again.
    """

    def __init__(self, engine_factory: Any, sources: list[Source] | Callable[[], list[Source]] | None = None,
                 interval: float = 60.0, config_version: Callable[[], Any] | None = None,
                 after_run: Callable[[], None] | None = None, gate: Callable[[], bool] | None = None) -> None:
        self.engine_factory = engine_factory
        # Asked before each tick: with replicas only the holder of the cluster's leader lease runs
        # it (server/leader.py); the others skip the tick and ask again every second or so.
        self.gate = gate
        self.skipped = 0
        # Called after each run (e.g. to wake alert delivery, which runs in its own thread).
        self.after_run = after_run
        # When this changes (e.g. the lists file was edited), the engine is rebuilt before the next
        # run, so new protected citizens or partners apply without a restart.
        self.config_version = config_version
        # A callable is asked before each run, so sources that appear later (a store created after
        # start-up) are read too.
        self.sources = sources if callable(sources) else list(sources or [])
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_report: RunReport | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ztcp-siem-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        engine = None
        version: Any = None
        while not self._stop.is_set():
            if self.gate is not None and not self.gate():
                self.skipped += 1
                self._stop.wait(min(self.interval, 1.0))
                continue
            try:
                if engine is not None and self.config_version is not None and self.config_version() != version:
                    engine.close()
                    engine = None
                if engine is None:
                    version = self.config_version() if self.config_version is not None else None
                    engine = self.engine_factory()
                sources = self.sources() if callable(self.sources) else self.sources
                if sources:
                    engine.ingest(sources)
                self.last_report = engine.run()
                self.last_error = None
            except Exception as exc:  # keep scheduling; the error is visible on the scheduler
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("siem scheduled run failed: %s", self.last_error)
            self.runs += 1
            if self.after_run is not None:
                try:
                    self.after_run()
                except Exception as exc:  # a hook must not stop the scheduler
                    log.warning("siem after-run hook failed: %s", type(exc).__name__)
            self._stop.wait(self.interval)
        if engine is not None:
            engine.close()
