"""In-process recording with group commit.

``record`` blocks until its event is durable. Concurrent callers queue their events; whichever caller
holds the commit lock writes everything queued so far in one fsync'd transaction (leader/follower
group commit, no background thread to own or leak), so N threads pay ~1 fsync instead of N.
A failed write fails every caller in that batch with ``LedgerUnavailable``: callers that were about
to release plaintext must not (DESIGN §2).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from provenance.errors import LedgerUnavailable
from provenance.events import ProvenanceEvent
from provenance.ledger import Ledger, Receipt


class _Ticket:
    __slots__ = ("events", "receipts", "error", "done")

    def __init__(self, events: Sequence[ProvenanceEvent]) -> None:
        self.events = events
        self.receipts: list[Receipt] = []
        self.error: BaseException | None = None
        self.done = False


class Recorder:
    def __init__(self, ledger: Ledger, *, max_batch: int = 10_000, checkpoint_timer: bool = False) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self._queue: list[_Ticket] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if checkpoint_timer:
            # Checkpoints also come "every T seconds" when traffic stops short of N events.
            self._timer = threading.Thread(target=self._tick, name="ztcp-checkpoint", daemon=True)
            self._timer.start()

    def record(self, event: ProvenanceEvent) -> Receipt:
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[ProvenanceEvent]) -> list[Receipt]:
        if not events:
            return []
        for e in events:
            if not isinstance(e, ProvenanceEvent):
                raise TypeError("Recorder records ProvenanceEvent instances")
        ticket = _Ticket(list(events))
        with self._queue_lock:
            self._queue.append(ticket)
        with self._commit_lock:
            if not ticket.done:
                self._commit_queued()
        if ticket.error is not None:
            raise LedgerUnavailable(str(ticket.error)) from ticket.error
        return ticket.receipts

    def _commit_queued(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue, []
        # Split very large queues so one transaction stays bounded; order is preserved.
        start = 0
        while start < len(batch):
            group, n = [], 0
            while start < len(batch) and (not group or n + len(batch[start].events) <= self.max_batch):
                group.append(batch[start])
                n += len(batch[start].events)
                start += 1
            events = [e for t in group for e in t.events]
            try:
                receipts = self.ledger.append(events)
            except Exception as exc:  # noqa: BLE001 - every waiter learns it failed
                err = exc if isinstance(exc, LedgerUnavailable) else LedgerUnavailable(f"ledger write failed: {exc}")
                for t in group:
                    t.error, t.done = err, True
                continue
            i = 0
            for t in group:
                t.receipts = receipts[i : i + len(t.events)]
                i += len(t.events)
                t.done = True

    def _tick(self) -> None:
        interval = max(0.05, min(self.ledger.checkpoint_interval, 5.0))
        while not self._stop.wait(interval):
            try:
                with self._commit_lock:
                    self.ledger.maybe_checkpoint()
            except Exception:  # noqa: BLE001, S112 - the next append or tick retries
                continue

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=10)
