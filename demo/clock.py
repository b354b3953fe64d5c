"""The simulated clock: one source of "now" for the PDP, token checks, provenance and key audit.

The demo replays a week in a few minutes. Rather than re-stamping events after the fact, every
component that stamps or checks time asks this clock (``Runtime(settings, clock=...)``), so a decision
made "last Tuesday at 10:05" is logged, verified, recorded and detected at that moment.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime


class SimClock:
    """A settable clock: ``clock()`` returns seconds since the epoch, like ``time.time``.

    Time never runs backwards: :meth:`set` to an earlier moment is refused, so the ledger, decision
    log and signal history see one monotonic timeline.
    """

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        with self._lock:
            if when < self._now:
                raise ValueError("the simulated clock cannot run backwards")
            self._now = float(when)

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self._now, tz=UTC)
