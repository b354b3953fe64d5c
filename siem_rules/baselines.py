"""Early warning beyond fixed thresholds: behavioural baselines and claims-fraud indicators.

Two Python analytics (see analytics.py for why analytics exist at all), run by the engine like any
rule, writing alerts into the same store, each alert carrying its explanation in words:

* :class:`BehaviourBaseline` (``behaviour_baseline``) — per employee and per peer group (same role
  and office, from the decision log's ``input.subject.roles`` and ``org_unit``): daily volume,
  distinct citizens, hours of work and datasets over a rolling window (``baseline_days``, 28).
  Robust statistics — median and MAD, never the mean, so the odd busy day in the baseline does not
  hide the next one. A day is unusual when it is far outside *both* the employee's own usual range
  and their peers' (a busy office on deadline day raises nothing): "212 citizens today; usual 8–15;
  peers 10–20". A fixed threshold (200 reads an hour) misses the employee who reads 30 an hour all
  day; this catches them.
* :class:`ClaimsFraudIndicators` (``claims_fraud_indicators``) — from the ledger's events:
  one payout account now receiving the benefits of several claimants (``bank_account_ref``; the
  state of every citizen's *current* account, so a mule account filled slowly over months is seen
  where the 30-day ``shared_bank_account`` rule forgets), a bank-account change shortly before a
  payout to that citizen, and one agent or doctor (``intermediary_ref``) behind an unusual share of
  claims compared with their own usual share and the median intermediary's.

State lives in small tables beside the events (daily aggregates, current payout accounts, recent
account changes), updated from the new events of each run, so a run's cost is the new events plus
the day(s) they touch, not the history. Alerts hold references and counts only.
"""

from __future__ import annotations

import fnmatch
import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .alerts import Hit
from .config import SiemConfig
from .rulepack import AlertingRule
from .store import TABLE

DAY = 86400.0
MAD_TO_SD = 1.4826  # MAD of a normal distribution × this = its standard deviation


# ---- robust statistics --------------------------------------------------------------------------


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    if n == 0:
        return 0.0
    return float(v[n // 2]) if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def mad(values: list[float], med: float | None = None) -> float:
    m = median(values) if med is None else med
    return median([abs(x - m) for x in values])


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), for the "usual range" an alert states."""
    v = sorted(values)
    if not v:
        return 0.0
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def robust_z(x: float, values: list[float]) -> float:
    """How many robust standard deviations ``x`` lies above the median of ``values``.

    The scale is at least √median (counts of independent events vary at least that much) and 1,
    so a perfectly regular employee (MAD 0) does not make every small wobble infinitely unusual."""
    med = median(values)
    scale = max(MAD_TO_SD * mad(values, med), math.sqrt(max(med, 0.0)), 1.0)
    return (x - med) / scale


def usual(values: list[float]) -> tuple[int, int]:
    """The usual range stated in explanations: 10th to 90th percentile, rounded."""
    return round(quantile(values, 0.1)), round(quantile(values, 0.9))


# ---- behavioural baselines ------------------------------------------------------------------------


class _Day:
    """One employee's day: counts, distinct citizens, requests per hour and per dataset."""

    __slots__ = ("citizens", "datasets", "evidence", "hours", "n", "peer")

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.n = 0
        self.citizens: set[str] | int = set()
        self.hours: dict[str, int] = defaultdict(int)
        self.datasets: dict[str, int] = defaultdict(int)
        self.evidence: list[tuple[float, str, str, str]] = []  # ts, event id, hour, dataset


def _matches_any(value: str, patterns: list[str]) -> bool:
    v = value.lower()
    return any(fnmatch.fnmatchcase(v, p.lower()) for p in patterns)


def _hour_span(hours: Iterable[str]) -> str:
    hs = sorted(int(h) for h in hours)
    return f"{hs[0]:02d}:00–{hs[-1] + 1:02d}:00" if hs else "none"


def _hours_list(hours: Iterable[str]) -> str:
    """Consecutive hours as ranges: 07, 20, 21 → "07:00–08:00, 20:00–22:00"."""
    hs = sorted(int(h) for h in hours)
    out: list[str] = []
    start = prev = None
    for h in hs + [None]:  # type: ignore[list-item]
        if start is None:
            start = prev = h
        elif h is not None and h == prev + 1:
            prev = h
        else:
            out.append(f"{start:02d}:00–{prev + 1:02d}:00")
            start = prev = h
    return ", ".join(out)


def _day_counts(sets: Iterable[dict]) -> dict[str, int]:
    """On how many days each key (an hour, a dataset) occurs."""
    out: dict[str, int] = defaultdict(int)
    for s in sets:
        for k in s:
            out[k] += 1
    return out


def _within(own_counts: dict, key: str, pw: _PeerWindow, subject: str, pos: int) -> int:
    """This employee's own days with ``key`` inside the peer window (to leave them out of it)."""
    if not own_counts:
        return 0
    return pw.own_counts(subject, pos).get(key, 0)


class _PeerWindow:
    """A peer group's days in the baseline window before ``day``, aggregated once per group and day
    (every member of the group is scored against it, each leaving their own days out)."""

    def __init__(self, peer: str, day: str, by_peer_day: dict, days: int) -> None:
        d0 = date.fromisoformat(day)
        # rows: (subject, n, citizens, hours, datasets)
        self.rows = [row for k in range(1, days + 1)
                     for row in by_peer_day.get((peer, (d0 - timedelta(days=k)).isoformat()), [])]
        self.members: dict[str, int] = defaultdict(int)
        for row in self.rows:
            self.members[row[0]] += 1
        self.hours = _day_counts(row[3] for row in self.rows)
        self.datasets = _day_counts(row[4] for row in self.rows)
        self._own: dict[tuple[str, int], dict[str, int]] = {}

    def own_counts(self, subject: str, pos: int) -> dict[str, int]:
        key = (subject, pos)
        if key not in self._own:
            self._own[key] = _day_counts(row[pos + 1] for row in self.rows if row[0] == subject)
        return self._own[key]


class BehaviourBaseline:
    id = "3c8e2a41-6f0d-4b7e-9a35-0d1e5b7c2f48"
    name = "behaviour_baseline"
    kind = "decision"

    def rule(self) -> AlertingRule:
        return AlertingRule(
            id=self.id,
            name=self.name,
            title="Unusual day for this employee and their peers",
            description="An employee's day is far outside their own usual range over the last weeks and "
            "their peers' (same role and office) in volume, distinct citizens, hours of work or datasets: "
            "low-and-slow browsing or collection that stays under fixed thresholds. Median/MAD baselines; "
            "the alert states the day's figures and both usual ranges.",
            level="medium",
            tags=["attack.collection", "attack.t1213"],
            falsepositives=["A new assignment or a temporary task force", "Covering for an absent colleague"],
            file=Path(__file__),
            logsource=["decision"],
            analytic=self.name,
            suppress_by=["input.subject.id", "local.date"],
        )

    def init(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS siem_baseline_day (subject TEXT NOT NULL, day TEXT NOT NULL, "
            "peer TEXT NOT NULL, n INTEGER NOT NULL, citizens INTEGER NOT NULL, hours TEXT NOT NULL, "
            "datasets TEXT NOT NULL, PRIMARY KEY (subject, day)) WITHOUT ROWID"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS siem_baseline_day_day ON siem_baseline_day(day)")

    # -- the day's figures ------------------------------------------------------------------------

    def _days_touched(self, conn: sqlite3.Connection, lo: int, hi: int) -> list[str]:
        rows = conn.execute(
            f"SELECT DISTINCT local_date FROM {TABLE[self.kind]} NOT INDEXED WHERE rid > ? AND rid <= ?",  # noqa: S608
            (lo, hi),
        ).fetchall()
        return sorted(r[0] for r in rows if r[0])

    def _aggregate(self, conn: sqlite3.Connection, days: list[str], config: SiemConfig) -> dict[tuple[str, str], _Day]:
        """Every employee's figures on ``days`` (whole local days, re-read from the store: distinct
        citizens need the day's set, and one day of events is small)."""
        tz = ZoneInfo(config.timezone)
        out: dict[tuple[str, str], _Day] = {}
        wanted = set(days)
        # Contiguous runs of days → one ts-range query each.
        spans: list[tuple[str, str]] = []
        for d in days:
            if spans and date.fromisoformat(d) - date.fromisoformat(spans[-1][1]) == timedelta(days=1):
                spans[-1] = (spans[-1][0], d)
            else:
                spans.append((d, d))
        for first, last in spans:
            t0 = datetime.combine(date.fromisoformat(first), time(0), tz).timestamp()
            t1 = datetime.combine(date.fromisoformat(last) + timedelta(days=1), time(0), tz).timestamp()
            cur = conn.execute(
                f"SELECT subject_id, subject_type, subject_roles, org_unit, local_date, local_hour, dataset, "  # noqa: S608
                f"citizen_ref, ts, event_id FROM {TABLE[self.kind]} WHERE ts >= ? AND ts < ? "
                "AND subject_id IS NOT NULL",
                (t0, t1),
            )
            skip: dict[str, bool] = {}
            for subject, stype, roles, unit, day, hour, dataset, citizen, ts, eid in cur:
                if day not in wanted:
                    continue
                s = subject.lower()
                excluded = skip.get(s)
                if excluded is None:
                    # Service principals run batches by design; their volume is not a person's behaviour.
                    excluded = skip[s] = (stype or "").lower() == "service" or _matches_any(
                        s, config.batch_principals)
                if excluded:
                    continue
                key = (s, day)
                d = out.get(key)
                if d is None:
                    d = out[key] = _Day(f"{(roles or '').lower()}@{(unit or '').lower()}")
                d.n += 1
                if citizen:
                    d.citizens.add(citizen)  # type: ignore[union-attr]
                d.hours[hour] += 1
                if dataset:
                    d.datasets[dataset.lower()] += 1
                d.evidence.append((ts, eid, hour, (dataset or "").lower()))
        return out

    # -- scoring ----------------------------------------------------------------------------------

    def evaluate(self, conn: sqlite3.Connection, lo_rid: int, hi_rid: int, config: SiemConfig) -> list[Hit]:
        self.init(conn)
        days = self._days_touched(conn, lo_rid, hi_rid)
        if not days:
            return []
        today = self._aggregate(conn, days, config)
        conn.executemany(
            "INSERT INTO siem_baseline_day(subject, day, peer, n, citizens, hours, datasets) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(subject, day) DO UPDATE SET peer=excluded.peer, n=excluded.n, citizens=excluded.citizens, "
            "hours=excluded.hours, datasets=excluded.datasets",
            [(s, day, d.peer, d.n, len(d.citizens), json.dumps(dict(d.hours), sort_keys=True),  # type: ignore[arg-type]
              json.dumps(dict(d.datasets), sort_keys=True)) for (s, day), d in today.items()],
        )
        # The state rows of the window before the first touched day up to the last: baselines.
        first = (date.fromisoformat(days[0]) - timedelta(days=config.baseline_days)).isoformat()
        history: dict[str, list[tuple[str, str, int, int, dict, dict]]] = defaultdict(list)
        by_peer_day: dict[tuple[str, str], list[tuple[str, int, int, dict, dict]]] = defaultdict(list)
        for subject, day, peer, n, citizens, hours, datasets in conn.execute(
            "SELECT subject, day, peer, n, citizens, hours, datasets FROM siem_baseline_day "
            "WHERE day >= ? AND day <= ?",
            (first, days[-1]),
        ):
            h, ds = json.loads(hours), json.loads(datasets)
            history[subject].append((day, peer, n, citizens, h, ds))
            by_peer_day[(peer, day)].append((subject, n, citizens, h, ds))
        hits = []
        peer_windows: dict[tuple[str, str], _PeerWindow] = {}
        for (subject, day), d in sorted(today.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            pw = peer_windows.get((d.peer, day))
            if pw is None:
                pw = peer_windows[(d.peer, day)] = _PeerWindow(d.peer, day, by_peer_day, config.baseline_days)
            hit = self._score(subject, day, d, history.get(subject, []), pw, config)
            if hit is not None:
                hits.append(hit)
        return hits

    def _score(self, subject: str, day: str, d: _Day, history: list, pw: _PeerWindow,
               config: SiemConfig) -> Hit | None:
        start = (date.fromisoformat(day) - timedelta(days=config.baseline_days)).isoformat()
        own = [r for r in history if start <= r[0] < day]
        if len(own) < config.baseline_min_days:
            return None  # still learning this employee
        peer_days = len(pw.rows) - pw.members.get(subject, 0)
        peers = len(pw.members) - (1 if subject in pw.members else 0)
        compare_peers = peers >= config.baseline_min_peers and peer_days >= config.baseline_min_days
        own_hours = _day_counts(r[4] for r in own)
        own_datasets = _day_counts(r[5] for r in own)
        reasons: list[str] = []
        evidence: set[tuple[float, str]] = set()
        scores: list[float] = []
        ncit = len(d.citizens)  # type: ignore[arg-type]

        # Volume and breadth: far above the employee's own range, and above their peers'.
        for label, x, own_vals, col in (("citizens", ncit, [r[3] for r in own], 2),
                                        ("requests", d.n, [r[2] for r in own], 1)):
            z = robust_z(x, own_vals)
            lo_u, hi_u = usual(own_vals)
            if z < config.baseline_threshold or x < config.baseline_min_ratio * median(own_vals) \
                    or x < hi_u + config.baseline_min_excess:
                continue
            text = f"{x} {label} today; usual {lo_u}–{hi_u}"
            if compare_peers:
                peer_vals = [row[col] for row in pw.rows if row[0] != subject]
                zp = robust_z(x, peer_vals)
                lo_p, hi_p = usual(peer_vals)
                if zp < config.baseline_threshold or x < hi_p + config.baseline_min_excess:
                    continue  # the whole peer group works like this: not this person's anomaly
                text += f"; peers {lo_p}–{hi_p}"
                z = min(z, zp)
            else:
                text += "; no peer group to compare"
            reasons.append(text)
            scores.append(z)
            evidence.update((ts, eid) for ts, eid, _, _ in d.evidence)

        # Hours and datasets: requests where this employee (and their peers) almost never work.
        rare = config.baseline_rare_share
        n_own = len(own)
        for label, today_counts, own_counts, peer_counts, pos in (
            ("hours", d.hours, own_hours, pw.hours, 2),
            ("datasets", d.datasets, own_datasets, pw.datasets, 3),
        ):
            # The peer window counts every member's days; take this employee's own days out of it.
            excl = own_counts if subject in pw.members else {}
            unusual = []
            for key, count in today_counts.items():
                own_share = own_counts.get(key, 0) / n_own
                peer_share = (peer_counts.get(key, 0) - _within(excl, key, pw, subject, pos)) / peer_days \
                    if compare_peers else 0.0
                if own_share < rare and peer_share < rare:
                    unusual.append((key, count))
            total = sum(c for _, c in unusual)
            if total < config.baseline_rare_min_events:
                continue
            keys = {k for k, _ in unusual}
            worked = sum(1 for r in own if keys & set(r[pos + 2]))
            if label == "hours":
                usual_own = [h for h, c in own_counts.items() if c / n_own >= rare]
                text = (f"{total} requests at {_hours_list(keys)}, hours worked on {worked} of {n_own} "
                        f"baseline days; usual {_hour_span(usual_own)}")
                if compare_peers:
                    usual_peer = [h for h, c in peer_counts.items() if c / max(len(pw.rows), 1) >= rare]
                    text += f"; peers {_hour_span(usual_peer)}"
            else:
                text = f"{total} requests on {', '.join(sorted(keys))}, used on {worked} of {n_own} baseline days"
                if compare_peers:
                    peer_used = sum(1 for row in pw.rows if row[0] != subject and keys & set(row[pos + 1]))
                    text += f"; peers on {peer_used} of {peer_days} days"
            reasons.append(text)
            scores.append(float(total))
            evidence.update((ts, eid) for ts, eid, hour, ds in d.evidence if (hour if pos == 2 else ds) in keys)

        if not reasons:
            return None
        ev = sorted(evidence)
        peer_note = f" (peer group {d.peer}, {peers} peers)" if compare_peers else ""
        return Hit(
            group={"input.subject.id": subject, "local.date": day},
            window_start=ev[0][0],
            window_end=ev[-1][0],
            evidence=ev,
            metric=round(max(scores), 2),
            explanation="; ".join(reasons) + peer_note,
        )


# ---- claims-fraud indicators ----------------------------------------------------------------------


def _local(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")


class ClaimsFraudIndicators:
    id = "9b4d7e15-2c6a-4f83-b0e9-58a1c3d7f6e2"
    name = "claims_fraud_indicators"
    kind = "provenance"
    # An indicator's alert stays one alert while the condition persists (one mule account, one
    # intermediary's streak); a citizen's change-before-payout is one episode per change.
    GAPS = {"shared_payout_account": 365 * DAY, "intermediary_claim_share": 7 * DAY,
            "account_change_before_payout": 0.0}

    def rule(self) -> AlertingRule:
        return AlertingRule(
            id=self.id,
            name=self.name,
            title="Claims-fraud indicator",
            description="Indicators of the bureau's claims-fraud early-warning programme: one payout account "
            "now receiving the benefits of several claimants; a bank-account change shortly before a payout "
            "to that citizen; one agent or doctor behind an unusual share of claims. The alert names the "
            "indicator and explains its figures.",
            level="high",
            tags=["attack.impact", "attack.t1565"],
            falsepositives=["Guardians or institutions receiving benefits for several wards",
                            "A citizen correcting their account just before a regular payment",
                            "An agent or clinic taking over another's caseload"],
            file=Path(__file__),
            logsource=["provenance"],
            analytic=self.name,
            suppress_by=["indicator"],
        )

    def init(self, conn: sqlite3.Connection) -> None:
        # Every citizen's current payout account (as last changed), and the recent changes.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS siem_payout_account (citizen_ref TEXT PRIMARY KEY, bank_account_ref TEXT "
            "NOT NULL, ts REAL NOT NULL, event_id TEXT NOT NULL) WITHOUT ROWID"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS siem_payout_account_ba ON siem_payout_account(bank_account_ref)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS siem_account_change (citizen_ref TEXT NOT NULL, ts REAL NOT NULL, "
            "event_id TEXT NOT NULL, purpose TEXT, PRIMARY KEY (citizen_ref, event_id)) WITHOUT ROWID"
        )
        # Claims naming an intermediary are a small share of provenance events: a partial index
        # makes "the last five weeks of them" a short range instead of a scan of every event.
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS siem_intermediary_ts ON {TABLE[self.kind]}(ts, intermediary_ref) "  # noqa: S608
            "WHERE intermediary_ref IS NOT NULL"
        )

    def evaluate(self, conn: sqlite3.Connection, lo_rid: int, hi_rid: int, config: SiemConfig) -> list[Hit]:
        self.init(conn)
        tz = ZoneInfo(config.timezone)
        hits = self._accounts(conn, lo_rid, hi_rid, config, tz)
        hits += self._intermediaries(conn, lo_rid, hi_rid, config, tz)
        for h in hits:
            h.gap = self.GAPS[h.group["indicator"]]
        return hits

    def _accounts(self, conn: sqlite3.Connection, lo: int, hi: int, config: SiemConfig, tz: ZoneInfo) -> list[Hit]:
        t = TABLE[self.kind]
        payouts = [p.lower() for p in config.payout_purposes] or ["__none__"]
        marks = ",".join("?" * len(payouts))
        # Ledger order is time order, so a payout is checked against the changes recorded before it.
        rows = conn.execute(
            f"SELECT ts, event_id, citizen_ref, bank_account_ref, purpose_code, type FROM {t} NOT INDEXED "  # noqa: S608
            f"WHERE rid > ? AND rid <= ? AND citizen_ref IS NOT NULL AND ((type = 'pii.update' AND "
            f"bank_account_ref IS NOT NULL) OR lower(purpose_code) IN ({marks})) ORDER BY ts, rid",
            (lo, hi, *payouts),
        ).fetchall()
        hits: list[Hit] = []
        touched_accounts: set[str] = set()
        window = config.account_change_payout_hours * 3600
        for ts, eid, citizen, account, purpose, type_ in rows:
            if type_ == "pii.update" and account:
                conn.execute(
                    "INSERT INTO siem_payout_account VALUES (?,?,?,?) ON CONFLICT(citizen_ref) DO UPDATE SET "
                    "bank_account_ref=excluded.bank_account_ref, ts=excluded.ts, event_id=excluded.event_id "
                    "WHERE excluded.ts >= siem_payout_account.ts",
                    (citizen, account, ts, eid),
                )
                conn.execute("INSERT OR IGNORE INTO siem_account_change VALUES (?,?,?,?)", (citizen, ts, eid, purpose))
                touched_accounts.add(account)
                continue
            for cts, ceid, cpurpose in conn.execute(
                "SELECT ts, event_id, purpose FROM siem_account_change WHERE citizen_ref=? AND ts <= ? AND ts >= ? "
                "ORDER BY ts", (citizen, ts, ts - window),
            ).fetchall():
                hours = (ts - cts) / 3600
                hits.append(Hit(
                    group={"indicator": "account_change_before_payout", "citizen_ref": citizen},
                    window_start=cts, window_end=ts, evidence=[(cts, ceid), (ts, eid)], metric=round(hours, 1),
                    explanation=(f"payout account changed {_local(cts, tz)} (purpose {cpurpose or 'none'}), "
                                 f"{hours:.0f} h before a payout on {_local(ts, tz)}; flagged within "
                                 f"{config.account_change_payout_hours:.0f} h"),
                ))
        if rows:  # changes older than any window that can still match are no longer needed
            conn.execute("DELETE FROM siem_account_change WHERE ts < ?", (rows[-1][0] - window - DAY,))
        for account in sorted(touched_accounts):
            payees = conn.execute(
                "SELECT ts, event_id FROM siem_payout_account WHERE bank_account_ref=? ORDER BY ts", (account,)
            ).fetchall()
            n = len(payees)
            if n < config.shared_account_min_claimants:
                continue
            hits.append(Hit(
                group={"indicator": "shared_payout_account", "bank_account_ref": account},
                window_start=payees[0][0], window_end=payees[-1][0], evidence=[(p[0], p[1]) for p in payees],
                metric=float(n),
                explanation=(f"payouts of {n} claimants now go to this one account (changed "
                             f"{_local(payees[0][0], tz)[:10]} to {_local(payees[-1][0], tz)[:10]}); flagged from "
                             f"{config.shared_account_min_claimants} (a household shares one with fewer)"),
            ))
        return hits

    def _intermediaries(self, conn: sqlite3.Connection, lo: int, hi: int, config: SiemConfig,
                        tz: ZoneInfo) -> list[Hit]:
        t = TABLE[self.kind]
        new = conn.execute(
            f"SELECT DISTINCT local_date FROM {t} NOT INDEXED WHERE rid > ? AND rid <= ? "  # noqa: S608
            "AND intermediary_ref IS NOT NULL", (lo, hi),
        ).fetchall()
        days = sorted(r[0] for r in new if r[0])
        if not days:
            return []
        w = config.intermediary_window_days * DAY
        base = config.baseline_days * DAY
        ends = [datetime.combine(date.fromisoformat(d) + timedelta(days=1), time(0), tz).timestamp() for d in days]
        claims = conn.execute(
            f"SELECT ts, event_id, intermediary_ref FROM {t} WHERE intermediary_ref IS NOT NULL "  # noqa: S608
            "AND ts >= ? AND ts < ? ORDER BY ts", (ends[0] - w - base, ends[-1]),
        ).fetchall()
        hits: list[Hit] = []
        for day, end in zip(days, ends, strict=True):
            recent = [c for c in claims if end - w <= c[0] < end]
            before = [c for c in claims if end - w - base <= c[0] < end - w]
            # Learning: shares need a baseline window with enough days of claims behind it.
            if not recent or not before or before[0][0] > end - w - config.baseline_min_days * DAY:
                continue
            now_count: dict[str, list[tuple[float, str]]] = defaultdict(list)
            for ts, eid, im in recent:  # references are canonical (upper-case base32): no folding
                now_count[im].append((ts, eid))
            base_count: dict[str, int] = defaultdict(int)
            for _, _, im in before:
                base_count[im] += 1
            total_now, total_base = len(recent), len(before)
            median_share = median([c / total_base for c in base_count.values()]) if total_base else 0.0
            for im, evs in now_count.items():
                n = len(evs)
                if n < config.intermediary_min_claims:
                    continue
                own_share = base_count.get(im, 0) / total_base if total_base else 0.0
                usual_share = max(own_share, median_share)
                expected = usual_share * total_now
                # Far above the usual share, and beyond what chance gives (Poisson: ~4 sd).
                if n < config.intermediary_share_ratio * expected or n < expected + 4 * math.sqrt(max(expected, 1)):
                    continue
                if usual_share == 0.0:
                    usual_text = "no history to compare"
                else:
                    usual_text = (f"usually {own_share:.1%} ({base_count.get(im, 0)} in the "
                                  f"{config.baseline_days} days before); the median intermediary {median_share:.1%}")
                hits.append(Hit(
                    group={"indicator": "intermediary_claim_share", "intermediary_ref": im},
                    window_start=evs[0][0], window_end=evs[-1][0], evidence=sorted(evs),
                    metric=round(n / expected, 1) if expected else float(n),
                    explanation=(f"{n} of {total_now} claims in the {config.intermediary_window_days} days to {day} "
                                 f"({n / total_now:.1%}) name this agent or doctor; {usual_text}"),
                ))
        return hits


def explain_config(config: SiemConfig) -> dict[str, Any]:
    """The knobs that shape these analytics (for ``ztcp siem list --json`` and the docs)."""
    keys = [k for k in SiemConfig.model_fields if k.startswith(("baseline_", "intermediary_", "shared_account",
                                                                "account_change_payout", "payout_"))]
    return {k: getattr(config, k) for k in keys}
