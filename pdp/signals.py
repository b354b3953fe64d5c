"""Signals: what the PDP infers about a request beyond the request itself (trust inference).

Stateless signals come from the verified token and the device/context. Stateful ones (recent
denies, failed step-ups, new device, impossible travel, request rate, breadth of citizens touched,
first access to a dataset) come from a per-subject history kept in memory and written behind to
SQLite, so a restart keeps the history. The policy turns signals into named risk factors; weights
and thresholds live in policy data, not here. Signals are logged with each decision, so a
simulation replays exactly what the PDP saw.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contracts.decision import DecisionRequest
from contracts.signals import Signals
from pdp.calendar import BusinessCalendar
from pdp.devices import UNKNOWN_DEVICE
from pdp.identity import SubjectIdentity

HOUR = 3600.0
TEN_MINUTES = 600.0
MINUTE = 60.0
STEP_UP_GRACE = 300.0  # a step-up not completed within 5 minutes counts as failed
_EARTH_KM = 6371.0088


@dataclass(frozen=True)
class TravelRule:
    max_speed_kmh: float = 900.0  # faster than an airliner
    min_distance_km: float = 100.0  # below this, geolocation noise dominates


@dataclass
class _SubjectState:
    window_10m: deque = field(default_factory=deque)  # (ts, citizen_ref or None)
    window_1h: deque = field(default_factory=deque)
    citizens_10m: Counter = field(default_factory=Counter)
    citizens_1h: Counter = field(default_factory=Counter)
    rate_1m: deque = field(default_factory=deque)
    denies: deque = field(default_factory=deque)
    pending_step_ups: dict = field(default_factory=dict)  # resource key → ts
    failed_step_ups: deque = field(default_factory=deque)
    last_geo: tuple[float, float, float] | None = None  # (ts, lat, lon)
    devices: set = field(default_factory=set)
    datasets: set = field(default_factory=set)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def resource_key(request: DecisionRequest) -> str:
    r = request.resource
    return f"{r.dataset}/{r.record_id or r.citizen_ref or '*'}/{request.action}"


def _expire(window: deque, counter: Counter | None, horizon: float) -> None:
    while window and window[0][0] < horizon:
        _, ref = window.popleft()
        if counter is not None and ref is not None:
            counter[ref] -= 1
            if counter[ref] <= 0:
                del counter[ref]


def _expire_times(times: deque, horizon: float) -> None:
    while times and times[0] < horizon:
        times.popleft()


class SignalHistory:
    """Per-subject behaviour windows. Thread-safe; persistence is optional (None = memory only)."""

    def __init__(self, path: Path | None = None, *, travel: TravelRule | None = None,
                 flush_interval: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        self.travel = travel or TravelRule()
        # The PDP's clock (a simulation or replay runs on its own): what is reloaded after a restart
        # and what is pruned from disk are judged by it, like the in-memory windows.
        self._clock = clock
        self._state: dict[str, _SubjectState] = {}
        self._lock = threading.Lock()
        self._pending: list[tuple] = []
        self._path = path
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._flush_interval = flush_interval
        if path is not None:
            self._open(path)

    # -- persistence ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _open(self, path: Path) -> None:
        conn = self._connect()
        with conn:
            conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS observations (
                  ts REAL NOT NULL, subject TEXT NOT NULL, device TEXT, citizen_ref TEXT, dataset TEXT,
                  lat REAL, lon REAL, effect TEXT NOT NULL, resource_key TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS observations_ts ON observations(ts);
                CREATE TABLE IF NOT EXISTS known_devices (
                  subject TEXT NOT NULL, device TEXT NOT NULL, first_seen REAL NOT NULL,
                  PRIMARY KEY (subject, device));
                CREATE TABLE IF NOT EXISTS known_datasets (
                  subject TEXT NOT NULL, dataset TEXT NOT NULL, first_seen REAL NOT NULL,
                  PRIMARY KEY (subject, dataset));
                """
            )
        since = self._clock() - HOUR
        for subject, device in conn.execute("SELECT subject, device FROM known_devices"):
            self._subject(subject).devices.add(device)
        for subject, dataset in conn.execute("SELECT subject, dataset FROM known_datasets"):
            self._subject(subject).datasets.add(dataset)
        rows = conn.execute(
            "SELECT ts, subject, device, citizen_ref, dataset, lat, lon, effect, resource_key "
            "FROM observations WHERE ts >= ? ORDER BY ts", (since,)
        ).fetchall()
        for row in rows:
            self._apply(*row)
        conn.close()
        self._writer = threading.Thread(target=self._write_loop, name="ztcp-signals-writer", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(self._flush_interval):
                self._flush(conn)
            self._flush(conn)
        finally:
            conn.close()

    def _flush(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        with conn:
            conn.executemany("INSERT INTO observations VALUES (?,?,?,?,?,?,?,?,?)", batch)
            conn.executemany("INSERT OR IGNORE INTO known_devices VALUES (?,?,?)",
                             [(b[1], b[2], b[0]) for b in batch if b[2]])
            conn.executemany("INSERT OR IGNORE INTO known_datasets VALUES (?,?,?)",
                             [(b[1], b[4], b[0]) for b in batch if b[4] and b[7] == "permit"])
            conn.execute("DELETE FROM observations WHERE ts < ?", (self._clock() - 2 * HOUR,))

    def close(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout=10)
            self._writer = None

    # -- state ------------------------------------------------------------------------------
    def _subject(self, subject_id: str) -> _SubjectState:
        state = self._state.get(subject_id)
        if state is None:
            state = self._state[subject_id] = _SubjectState()
        return state

    def _apply(self, ts: float, subject: str, device: str | None, citizen_ref: str | None,
               dataset: str | None, lat: float | None, lon: float | None, effect: str, rkey: str) -> None:
        s = self._subject(subject)
        s.window_10m.append((ts, citizen_ref))
        s.window_1h.append((ts, citizen_ref))
        if citizen_ref:
            s.citizens_10m[citizen_ref] += 1
            s.citizens_1h[citizen_ref] += 1
        s.rate_1m.append(ts)
        if effect == "deny":
            s.denies.append(ts)
        if effect == "step_up":
            s.pending_step_ups.setdefault(rkey, ts)
        elif effect == "permit":
            s.pending_step_ups.pop(rkey, None)
        if lat is not None and lon is not None:
            s.last_geo = (ts, lat, lon)
        # A device becomes "known" only through a permitted request: a denied attempt from a new
        # device must not make the retry look familiar. The unknown device never becomes known.
        if device and device != UNKNOWN_DEVICE and effect == "permit":
            s.devices.add(device)
        if dataset and effect == "permit":
            s.datasets.add(dataset)

    def _age(self, s: _SubjectState, now: float) -> None:
        _expire(s.window_10m, s.citizens_10m, now - TEN_MINUTES)
        _expire(s.window_1h, s.citizens_1h, now - HOUR)
        _expire_times(s.rate_1m, now - MINUTE)
        _expire_times(s.denies, now - HOUR)
        for key, ts in list(s.pending_step_ups.items()) if s.pending_step_ups else ():
            if ts < now - STEP_UP_GRACE:
                del s.pending_step_ups[key]
                s.failed_step_ups.append(ts)
        _expire_times(s.failed_step_ups, now - HOUR)

    # -- the two operations of the decide path ----------------------------------------------
    def compute(self, subject: SubjectIdentity, request: DecisionRequest, now: float,
                calendar: BusinessCalendar) -> Signals:
        local_hour, off_hours, holiday = calendar.at(now)  # cached per minute: no datetimes per decision
        res = request.resource
        geo = request.context.geo
        with self._lock:
            s = self._subject(subject.id)
            self._age(s, now)
            citizen = res.citizen_ref
            distinct_10m = len(s.citizens_10m) + (1 if citizen and citizen not in s.citizens_10m else 0)
            distinct_1h = len(s.citizens_1h) + (1 if citizen and citizen not in s.citizens_1h else 0)
            speed = 0.0
            impossible = False
            if geo is not None and s.last_geo is not None:
                then, lat, lon = s.last_geo
                km = haversine_km(lat, lon, geo.lat, geo.lon)
                hours = max(now - then, 1.0) / HOUR
                speed = km / hours
                impossible = km >= self.travel.min_distance_km and speed > self.travel.max_speed_kmh
            signals: Signals = {
                "auth_strength": subject.auth_strength,
                "token_age_s": max(0, int(now - (subject.auth_time or subject.issued_at or now))),
                "recent_denies_1h": len(s.denies),
                "failed_step_ups_1h": len(s.failed_step_ups),
                "device_first_seen": request.device.id not in s.devices,
                "location_unknown": geo is None,
                "off_hours": off_hours,
                "holiday": holiday,
                "local_hour": local_hour,
                "impossible_travel": impossible,
                "travel_speed_kmh": round(speed, 1),
                "request_rate_1m": len(s.rate_1m) + 1,
                "distinct_citizens_10m": distinct_10m,
                "distinct_citizens_1h": distinct_1h,
                "first_dataset_access": res.dataset not in s.datasets,
                "self_record": bool(subject.citizen_ref and citizen and subject.citizen_ref == citizen),
            }
        return signals

    def observe(self, subject_id: str, request: DecisionRequest, effect: str, now: float) -> None:
        geo = request.context.geo
        row = (now, subject_id, request.device.id, request.resource.citizen_ref, request.resource.dataset,
               geo.lat if geo else None, geo.lon if geo else None, effect, resource_key(request))
        with self._lock:
            self._apply(*row)
            if self._path is not None:
                self._pending.append(row)
