"""Signals: what the PDP infers about a request beyond the request itself (trust inference).

Stateless signals come from the verified token and the device/context. Stateful ones (recent
denies, failed step-ups, new device, impossible travel, request rate, breadth of citizens touched,
first access to a dataset) come from a per-subject history of *observations* (one per decision).
The policy turns signals into named risk factors; weights and thresholds live in policy data, not
here. Signals are logged with each decision, so a simulation replays exactly what the PDP saw.

**Where the history lives.** In memory, for speed: computing a decision's signals never waits for
a database. Observations are written behind to a :class:`SignalStore`:

* SQLite (``ZTCP_HOME/signals.db``, the default): one process; a restart reloads the last hour.
* PostgreSQL (``ZTCP_DATABASE_URL``): shared by every replica, which then behave as one. Each
  replica (a) writes its observations behind at once (group commit: whatever accumulated while
  the previous commit was in flight), (b) tails the other replicas' observations by id, woken by
  ``NOTIFY`` at their commit, and applies them to its own memory, and (c) before computing a
  subject's signals, if its tail has not confirmed being caught up within ``max_lag`` (0.5 s:
  the tailer is disconnected, or starved), reads that subject's newer observations straight from
  the store; if the store does not answer either, the decision is denied
  (``signal_history_unavailable``): signals that cannot be vouched for are not guessed.

**Consistency.** An observation made on replica A counts on replica B once A has committed it
(normally within a few milliseconds of A's decision) and B has applied it (about a millisecond
after the commit, through the notification); ``tests/pdp/test_cluster.py`` measures the whole
A-decides → B-sees delay. Whatever B's tailer is doing, a decision B makes more than ``max_lag``
after an observation was committed sees it. Observations may reach a replica out of time order
(two replicas deciding for one subject in the same instant, clock skew); windows are kept sorted
and the step-up state is recomputed from the retained observations, so once every observation has
been applied a replica's state is what one process replaying the same traffic in time order would
hold (:mod:`pdp.replay`). The one exception is an unbroken chain of step-ups without a permit
spanning more than ``STEP_RETENTION``, where the recomputation may count one failure more or less.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contracts.decision import DecisionRequest
from contracts.signals import Signals
from pdp.calendar import BusinessCalendar
from pdp.devices import UNKNOWN_DEVICE
from pdp.errors import SignalHistoryUnavailable, StoreUnavailable
from pdp.identity import SubjectIdentity

log = logging.getLogger("ztcp.pdp.signals")

HOUR = 3600.0
TEN_MINUTES = 600.0
MINUTE = 60.0
STEP_UP_GRACE = 300.0  # a step-up not completed within 5 minutes counts as failed
# Step-up and permit observations kept to recompute the step-up state after a late arrival: an
# hour of failures plus a margin for the chains of pending step-ups that decide where one starts.
STEP_RETENTION = HOUR + 4 * STEP_UP_GRACE
_EARTH_KM = 6371.0088

# The signals that depend on the history (the rest come from the token and the request alone):
# these are the ones replicas must agree on.
HISTORY_SIGNALS = ("recent_denies_1h", "failed_step_ups_1h", "device_first_seen", "impossible_travel",
                   "travel_speed_kmh", "request_rate_1m", "distinct_citizens_10m", "distinct_citizens_1h",
                   "first_dataset_access")

# An observation: (ts, subject, device, citizen_ref, dataset, lat, lon, effect, resource_key).
Observation = tuple[float, str, str | None, str | None, str | None, float | None, float | None, str, str]
# (ts, citizen_ref or None) in a subject's distinct-citizen windows; (ts, resource key, effect) of a step.
_Seen = tuple[float, str | None]
_Step = tuple[float, str, str]
# What a store loads at start: (observations, known (subject, device), known (subject, dataset), cursor).
Snapshot = tuple[list[Observation], list[tuple[str, str]], list[tuple[str, str]], int]
# The history signals, in HISTORY_SIGNALS order.
_History = tuple[int, int, bool, bool, float, int, int, int, bool]


class SignalStore(Protocol):
    """Where a :class:`SignalHistory` writes its observations behind, and (shared) reads others'.

    Drivers: :class:`pdp.sqlite_stores.SqliteSignalStore`, :class:`pdp.pg_stores.PostgresSignalStore`;
    ``tests/pdp/test_store_conformance.py`` is the contract. Every method raises
    :class:`pdp.errors.StoreUnavailable` on a database error.
    """

    component: str
    shared: bool  # others write here too: follow them (after/wait) and gate on freshness
    poll_interval: float  # the longest wait() between two after() calls
    flush_interval: float  # the write-behind interval when nothing asks for an earlier write
    batch_interval: float  # the shortest time between two commits (lets batches gather under load)

    def load(self, since: float) -> Snapshot:
        """(observations at or after ``since`` in time order, known (subject, device), known (subject,
        dataset), the id cursor after them), from one snapshot."""
        ...

    def append(self, origin: str, batch: Sequence[tuple[int, Observation]]) -> None:
        """Durably add (oseq, observation) pairs of ``origin``; pairs stored before are skipped.
        Devices and datasets of permits become known."""
        ...

    def after(self, cursor: int, origin: str, limit: int = 5000) -> tuple[list[tuple[int, Observation]], int, bool]:
        """Other origins' observations with id > ``cursor``, in id order: (rows, new cursor, complete)."""
        ...

    def subject_after(self, subject: str, cursor: int, origin: str) -> list[tuple[int, Observation]]:
        """One subject's observations of other origins with id > ``cursor``."""
        ...

    def prune(self, before: float) -> None: ...

    def wait(self, timeout: float, origin: str) -> None:
        """Until another origin may have appended, or ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TravelRule:
    max_speed_kmh: float = 900.0  # faster than an airliner
    min_distance_km: float = 100.0  # below this, geolocation noise dominates


@dataclass
class _SubjectState:
    window_10m: deque[_Seen] = field(default_factory=deque)  # (ts, citizen_ref or None), time order
    window_1h: deque[_Seen] = field(default_factory=deque)
    citizens_10m: Counter[str] = field(default_factory=Counter)
    citizens_1h: Counter[str] = field(default_factory=Counter)
    rate_1m: deque[float] = field(default_factory=deque)
    denies: deque[float] = field(default_factory=deque)
    pending_step_ups: dict[str, float] = field(default_factory=dict)  # resource key → ts
    failed_step_ups: deque[float] = field(default_factory=deque)
    last_geo: tuple[float, float, float] | None = None  # (ts, lat, lon)
    devices: set[str | None] = field(default_factory=set)
    datasets: set[str | None] = field(default_factory=set)
    steps: deque[_Step] = field(default_factory=deque)  # (ts, resource key, effect) of step-ups and permits
    step_up_keys: Counter[str] = field(default_factory=Counter)  # resource keys of the step-ups in ``steps``
    latest: float = -math.inf  # the newest instant applied: an observation's time or an aging "now"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def resource_key(request: DecisionRequest) -> str:
    r = request.resource
    return f"{r.dataset}/{r.record_id or r.citizen_ref or '*'}/{request.action}"


def _expire(window: deque[_Seen], counter: Counter[str] | None, horizon: float) -> None:
    while window and window[0][0] < horizon:
        _, ref = window.popleft()
        if counter is not None and ref is not None:
            counter[ref] -= 1
            if counter[ref] <= 0:
                del counter[ref]


def _expire_times(times: deque[float], horizon: float) -> None:
    while times and times[0] < horizon:
        times.popleft()


def _expire_steps(steps: deque[_Step], step_up_keys: Counter[str], horizon: float) -> None:
    while steps and steps[0][0] < horizon:
        _, key, effect = steps.popleft()
        if effect == "step_up":
            step_up_keys[key] -= 1
            if step_up_keys[key] <= 0:
                del step_up_keys[key]


def _insort(items: deque[Any], item: Any, ts: float) -> None:
    """Insert into a time-ordered deque of (ts, …) tuples; late items are near the end, so scan back."""
    i = len(items)
    while i and items[i - 1][0] > ts:
        i -= 1
    items.insert(i, item)


def _insort_time(times: deque[float], ts: float) -> None:
    i = len(times)
    while i and times[i - 1] > ts:
        i -= 1
    times.insert(i, ts)


def _age_step_ups(pending: dict[str, float], failed: deque[float], now: float) -> None:
    for key, ts in list(pending.items()):
        if ts < now - STEP_UP_GRACE:
            del pending[key]
            failed.append(ts)


def new_origin() -> str:
    """A name for this process's observations: host, pid and a random tag (pids are reused)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


class SignalHistory:
    """Per-subject behaviour windows. Thread-safe. ``store`` (or ``path``, a SQLite file) persists
    them; neither = memory only. See the module docstring for replicas."""

    def __init__(self, path: Path | None = None, *, store: SignalStore | None = None,
                 travel: TravelRule | None = None, flush_interval: float | None = None,
                 clock: Callable[[], float] = time.time, max_lag: float = 0.5,
                 max_pending: int = 200_000) -> None:
        self.travel = travel or TravelRule()
        # The PDP's clock (a simulation or replay runs on its own): what is reloaded after a restart
        # and what is pruned from the store are judged by it, like the in-memory windows.
        self._clock = clock
        self._state: dict[str, _SubjectState] = {}
        self._lock = threading.Lock()
        if store is None and path is not None:
            from pdp.sqlite_stores import SqliteSignalStore

            store = SqliteSignalStore(path)
        self._store = store
        self.origin = new_origin()
        self._oseq = 0
        self._pending: list[tuple[int, Observation]] = []
        self._max_pending = max_pending
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._tailer: threading.Thread | None = None
        self._flush_interval = flush_interval if flush_interval is not None else (
            store.flush_interval if store is not None else 0.5)
        # On a shared store the writer commits at once (the others' view waits on it); alone, it
        # batches on the interval, as ever.
        self._eager = bool(store is not None and store.shared)
        self.max_lag = max_lag
        self._cursor = 0  # the store's id up to which others' observations are applied
        self._through: set[int] = set()  # ids above the cursor applied by a read-through
        self._fresh_at = -math.inf  # monotonic time up to which the tail is known complete
        self._lookup_failed_at = -math.inf  # the last read-through that failed: fail fast for a second
        self._lookup_error = ""
        self.last_error: str | None = None  # the writer's, while the store refuses writes
        self.tail_error: str | None = None
        self.written = 0
        self.dropped = 0
        self.applied_remote = 0  # others' observations applied here (tail and read-through)
        self.read_throughs = 0
        self.late = 0  # observations that arrived after a later one of their subject (see _apply_late)
        if store is not None:
            self._open(store)

    # -- persistence ------------------------------------------------------------------------
    def _open(self, store: SignalStore) -> None:
        started = time.monotonic()
        rows, devices, datasets, cursor = store.load(self._clock() - STEP_RETENTION)
        for subject, device in devices:
            self._subject(subject).devices.add(device)
        for subject, dataset in datasets:
            self._subject(subject).datasets.add(dataset)
        for row in rows:
            self._apply(row)
        self._cursor = cursor
        self._fresh_at = started
        self._writer = threading.Thread(target=self._write_loop, name="ztcp-signals-writer", daemon=True)
        self._writer.start()
        if store.shared:
            self._tailer = threading.Thread(target=self._tail_loop, name="ztcp-signals-tail", daemon=True)
            self._tailer.start()

    def _write_loop(self) -> None:
        store = self._store
        assert store is not None
        next_prune = 0.0
        while True:
            stopping = self._stop.is_set()
            if not stopping:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                try:
                    store.append(self.origin, batch)
                except StoreUnavailable as exc:
                    with self._lock:  # keep them, oldest first, for the next attempt
                        self._pending[:0] = batch
                        self._trim()
                    if self.last_error is None:
                        log.error("signal history: cannot write %d observations, keeping them for retry: %s",
                                  len(batch), exc)
                    self.last_error = str(exc)
                    if stopping:
                        log.warning("signal history closed with %d observations unwritten", len(batch))
                        return
                    self._stop.wait(0.5)
                    continue
                self.written += len(batch)
                if self.last_error is not None:
                    log.info("signal history: writing again")
                self.last_error = None
                if store.batch_interval and not stopping:
                    self._stop.wait(store.batch_interval)  # group commit: let the next batch gather
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + 60.0
                try:
                    store.prune(self._clock() - 2 * HOUR - STEP_RETENTION)
                except StoreUnavailable as exc:
                    log.warning("signal history: prune failed: %s", exc)
            if stopping:
                with self._lock:
                    if not self._pending:
                        return

    def _trim(self) -> None:
        """Bound what waits for a store that stays down: the oldest observations go first."""
        over = len(self._pending) - self._max_pending
        if over > 0:
            del self._pending[:over]
            self.dropped += over
            log.warning("signal history: store down too long, %d oldest unwritten observations dropped", over)

    def _tail_loop(self) -> None:
        store = self._store
        assert store is not None
        backoff = 0.1
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                rows, cursor, complete = store.after(self._cursor, self.origin)
                if rows or cursor != self._cursor:
                    with self._lock:
                        for oid, row in rows:
                            if oid in self._through:  # a read-through applied it already
                                self._through.discard(oid)
                            else:
                                self._apply(row)
                                self.applied_remote += 1
                        self._cursor = cursor
                        if self._through:
                            self._through = {i for i in self._through if i > cursor}
                if not complete:
                    continue
                self._fresh_at = started  # everything committed before this pass began is applied
                if self.tail_error is not None:
                    log.info("signal history: following the other replicas again")
                self.tail_error = None
                backoff = 0.1
                store.wait(store.poll_interval, self.origin)
            except StoreUnavailable as exc:
                if self.tail_error is None:
                    log.error("signal history: cannot follow the other replicas: %s", exc)
                self.tail_error = str(exc)
                self._stop.wait(backoff)
                backoff = min(2 * backoff, 2.0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every observation made so far is written (or dropped). True when it was."""
        if self._store is None:
            return True
        with self._lock:
            target = self._oseq
        deadline = time.monotonic() + timeout
        while self.written + self.dropped < target:
            if time.monotonic() > deadline or self._writer is None:
                return False
            self._wake.set()
            time.sleep(0.002)
        return True

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._writer, self._tailer):
            if thread is not None:
                thread.join(timeout=10)
        self._writer = self._tailer = None
        if self._store is not None:
            self._store.close()

    # -- health (readiness) -----------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self._tailer is not None

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: writing works, and (shared) how far behind the tail is."""
        out: dict[str, Any] = {"ok": self.last_error is None and self.tail_error is None,
                               "store": type(self._store).__name__ if self._store is not None else None,
                               "pending": len(self._pending)}
        if self.last_error:
            out["error"] = self.last_error
        if self._tailer is not None:
            out["tail_lag_ms"] = round(max(0.0, time.monotonic() - self._fresh_at) * 1000, 1)
            if self.tail_error:
                out["tail_error"] = self.tail_error
        return out

    # -- state ------------------------------------------------------------------------------
    def _subject(self, subject_id: str) -> _SubjectState:
        state = self._state.get(subject_id)
        if state is None:
            state = self._state[subject_id] = _SubjectState()
        return state

    def _apply(self, row: Observation) -> None:
        ts, subject, device, citizen_ref, dataset, lat, lon, effect, rkey = row
        s = self._subject(subject)
        if ts < s.latest:  # another replica's decision, applied after a later one here
            self._apply_late(s, row)
            return
        s.latest = ts
        s.window_10m.append((ts, citizen_ref))
        s.window_1h.append((ts, citizen_ref))
        if citizen_ref:
            s.citizens_10m[citizen_ref] += 1
            s.citizens_1h[citizen_ref] += 1
        s.rate_1m.append(ts)
        if effect == "deny":
            s.denies.append(ts)
        if effect == "step_up" or effect == "permit":
            # A PDP ages the state before it observes (compute, then observe): another replica's
            # observation must meet the state aged to its instant, as its own PDP saw it.
            if s.pending_step_ups:
                _age_step_ups(s.pending_step_ups, s.failed_step_ups, ts)
            if effect == "step_up":
                s.pending_step_ups.setdefault(rkey, ts)
                s.step_up_keys[rkey] += 1
            else:
                s.pending_step_ups.pop(rkey, None)
            s.steps.append((ts, rkey, effect))
        if lat is not None and lon is not None:
            s.last_geo = (ts, lat, lon)
        # A device becomes "known" only through a permitted request: a denied attempt from a new
        # device must not make the retry look familiar. The unknown device never becomes known.
        if device and device != UNKNOWN_DEVICE and effect == "permit":
            s.devices.add(device)
        if dataset and effect == "permit":
            s.datasets.add(dataset)

    def _apply_late(self, s: _SubjectState, row: Observation) -> None:
        """An observation older than what this subject's state already reflects: windows take it in
        time order (the next aging drops it if it is already outside them), the location only if it
        is the newest, and the step-up state is recomputed as if it had come in order."""
        ts, _, device, citizen_ref, dataset, lat, lon, effect, rkey = row
        self.late += 1
        _insort(s.window_10m, (ts, citizen_ref), ts)
        _insort(s.window_1h, (ts, citizen_ref), ts)
        if citizen_ref:
            s.citizens_10m[citizen_ref] += 1
            s.citizens_1h[citizen_ref] += 1
        _insort_time(s.rate_1m, ts)
        if effect == "deny":
            _insort_time(s.denies, ts)
        if lat is not None and lon is not None and (s.last_geo is None or ts >= s.last_geo[0]):
            s.last_geo = (ts, lat, lon)
        if device and device != UNKNOWN_DEVICE and effect == "permit":
            s.devices.add(device)
        if dataset and effect == "permit":
            s.datasets.add(dataset)
        if effect == "step_up" or effect == "permit":
            _insort(s.steps, (ts, rkey, effect), ts)
            if effect == "step_up":
                s.step_up_keys[rkey] += 1
            # A late permit matters only to a resource that had a step-up: a bulk reader's permits on
            # ever-new records (the common late arrival) do not pay for the recomputation.
            if effect == "step_up" or rkey in s.step_up_keys:
                self._recompute_step_ups(s)

    @staticmethod
    def _recompute_step_ups(s: _SubjectState) -> None:
        """The step-up state from the retained step-ups and permits, in time order. The decide path
        ages the state before each observation (compute, then observe, at one instant), so aging at
        each observation's instant and finally at ``latest`` is what happened in order."""
        pending: dict[str, float] = {}
        failed: deque[float] = deque()
        for ts, rkey, effect in s.steps:
            _age_step_ups(pending, failed, ts)
            if effect == "step_up":
                pending.setdefault(rkey, ts)
            else:
                pending.pop(rkey, None)
        _age_step_ups(pending, failed, s.latest)
        _expire_times(failed, s.latest - HOUR)
        s.pending_step_ups, s.failed_step_ups = pending, failed

    def _age(self, s: _SubjectState, now: float) -> None:
        if now > s.latest:
            s.latest = now
        _expire(s.window_10m, s.citizens_10m, now - TEN_MINUTES)
        _expire(s.window_1h, s.citizens_1h, now - HOUR)
        _expire_times(s.rate_1m, now - MINUTE)
        _expire_times(s.denies, now - HOUR)
        if s.pending_step_ups:
            _age_step_ups(s.pending_step_ups, s.failed_step_ups, now)
        _expire_times(s.failed_step_ups, now - HOUR)
        _expire_steps(s.steps, s.step_up_keys, now - STEP_RETENTION)

    def _read_through(self, subject_id: str) -> None:
        """The tail cannot vouch for being current: fetch this subject's newer observations."""
        store = self._store
        assert store is not None
        if time.monotonic() - self._lookup_failed_at < 1.0:  # do not queue every request on a dead store
            raise SignalHistoryUnavailable(f"signal history may be stale and its store is down: {self._lookup_error}")
        try:
            rows = store.subject_after(subject_id, self._cursor, self.origin)
        except StoreUnavailable as exc:
            self._lookup_failed_at, self._lookup_error = time.monotonic(), str(exc)
            raise SignalHistoryUnavailable(f"signal history may be stale and its store is down: {exc}") from exc
        with self._lock:
            for oid, row in rows:
                if oid > self._cursor and oid not in self._through:
                    self._through.add(oid)
                    self._apply(row)
                    self.applied_remote += 1
        self.read_throughs += 1

    # -- the two operations of the decide path ----------------------------------------------
    def compute(self, subject: SubjectIdentity, request: DecisionRequest, now: float,
                calendar: BusinessCalendar) -> Signals:
        local_hour, off_hours, holiday = calendar.at(now)  # cached per minute: no datetimes per decision
        res = request.resource
        geo = request.context.geo
        if self._tailer is not None and time.monotonic() - self._fresh_at > self.max_lag:
            self._read_through(subject.id)
        with self._lock:
            (denies, failed, device_new, impossible, speed, rate, distinct_10m, distinct_1h,
             dataset_new) = self._history(subject.id, request.device.id, res.citizen_ref, res.dataset,
                                          (geo.lat, geo.lon) if geo is not None else None, now)
        citizen = res.citizen_ref
        signals: Signals = {
            "auth_strength": subject.auth_strength,
            "token_age_s": max(0, int(now - (subject.auth_time or subject.issued_at or now))),
            "recent_denies_1h": denies,
            "failed_step_ups_1h": failed,
            "device_first_seen": device_new,
            "location_unknown": geo is None,
            "off_hours": off_hours,
            "holiday": holiday,
            "local_hour": local_hour,
            "impossible_travel": impossible,
            "travel_speed_kmh": speed,
            "request_rate_1m": rate,
            "distinct_citizens_10m": distinct_10m,
            "distinct_citizens_1h": distinct_1h,
            "first_dataset_access": dataset_new,
            "self_record": bool(subject.citizen_ref and citizen and subject.citizen_ref == citizen),
        }
        return signals

    def _history(self, subject_id: str, device: str | None, citizen: str | None, dataset: str | None,
                 geo: tuple[float, float] | None, now: float) -> _History:
        """The history signals (HISTORY_SIGNALS, in that order) for a request at ``now``; the caller
        holds the lock."""
        s = self._subject(subject_id)
        self._age(s, now)
        distinct_10m = len(s.citizens_10m) + (1 if citizen and citizen not in s.citizens_10m else 0)
        distinct_1h = len(s.citizens_1h) + (1 if citizen and citizen not in s.citizens_1h else 0)
        speed = 0.0
        impossible = False
        if geo is not None and s.last_geo is not None:
            then, lat, lon = s.last_geo
            km = haversine_km(lat, lon, geo[0], geo[1])
            hours = max(now - then, 1.0) / HOUR
            speed = km / hours
            impossible = km >= self.travel.min_distance_km and speed > self.travel.max_speed_kmh
        return (len(s.denies), len(s.failed_step_ups), device not in s.devices, impossible, round(speed, 1),
                len(s.rate_1m) + 1, distinct_10m, distinct_1h, dataset not in s.datasets)

    def history_signals(self, subject_id: str, device: str | None, citizen: str | None, dataset: str | None,
                        geo: tuple[float, float] | None, now: float) -> dict[str, Any]:
        """The history signals by name, without a token or a request model (:mod:`pdp.replay`)."""
        with self._lock:
            return dict(zip(HISTORY_SIGNALS, self._history(subject_id, device, citizen, dataset, geo, now),
                            strict=True))

    def observe(self, subject_id: str, request: DecisionRequest, effect: str, now: float) -> None:
        geo = request.context.geo
        row = (now, subject_id, request.device.id, request.resource.citizen_ref, request.resource.dataset,
               geo.lat if geo else None, geo.lon if geo else None, effect, resource_key(request))
        with self._lock:  # observe_row's body, inlined: this is the decide path
            self._apply(row)
            if self._store is not None:
                self._oseq += 1
                self._pending.append((self._oseq, row))
                if len(self._pending) > self._max_pending:
                    self._trim()
        if self._eager:
            self._wake.set()

    def observe_row(self, row: Observation) -> None:
        """Record one decision's observation: applied here now, written behind for the others."""
        with self._lock:
            self._apply(row)
            if self._store is not None:
                self._oseq += 1
                self._pending.append((self._oseq, row))
                if len(self._pending) > self._max_pending:
                    self._trim()
        if self._eager:
            self._wake.set()
