"""In-process recording with group commit.

``record`` blocks until its event is durable. Concurrent callers queue their events; one caller at a
time is the leader and writes everything queued so far in one fsync'd transaction, repeating until
its own events are in (leader/follower group commit, no background thread to own or leak), so N
threads pay ~1 fsync instead of N.
A failed write fails every caller in that batch with ``LedgerUnavailable``: callers that were about
to release plaintext must not (docs/design.md, The guarantee).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from contracts.provenance_event import ProvenanceEvent
from provenance.errors import LedgerUnavailable, ProvenanceError
from provenance.ledger import Ledger, Prepared, Receipt

log = logging.getLogger(__name__)


class _Ticket:
    __slots__ = ("events", "receipts", "error", "done")

    def __init__(self, events: Sequence[Prepared]) -> None:
        self.events = events
        self.receipts: list[Receipt] = []
        self.error: BaseException | None = None
        self.done = False


class Recorder:
    def __init__(self, ledger: Ledger, *, max_batch: int = 10_000, checkpoint_timer: bool = False) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self._queue: list[_Ticket] = []
        self._cv = threading.Condition()
        self._leader = False
        self._commit_lock = threading.Lock()  # serialises transactions with the checkpoint timer
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
        # Canonical JSON and leaf hashes are computed here, in the caller's thread, while the leader's
        # SQLite work runs with the GIL released: producers overlap with the commit.
        ticket = _Ticket(self.ledger.prepare(events))
        with self._cv:
            self._queue.append(ticket)
            # Followers sleep on the condition (not on a lock), so while the leader's fsync runs every
            # newcomer piles into the queue and the next transaction takes them all at once.
            while not ticket.done and self._leader:
                self._cv.wait()
            if not ticket.done:
                self._leader = True
        if not ticket.done:
            try:
                while not ticket.done:
                    with self._cv:
                        batch, self._queue = self._queue, []
                    try:
                        self._commit(batch)
                    except BaseException:
                        # Interrupted mid-commit: nobody may wait forever on a batch that left the queue.
                        for t in batch:
                            if not t.done:
                                t.error, t.done = LedgerUnavailable("recording was interrupted"), True
                        raise
                    with self._cv:
                        self._cv.notify_all()
            finally:
                with self._cv:
                    self._leader = False
                    self._cv.notify_all()
        if ticket.error is not None:
            raise LedgerUnavailable(str(ticket.error)) from ticket.error
        return ticket.receipts

    def _commit(self, batch: list[_Ticket]) -> None:
        with self._commit_lock:
            self._commit_groups(batch)

    def _commit_groups(self, batch: list[_Ticket]) -> None:
        # Split very large queues so one transaction stays bounded; order is preserved.
        start = 0
        while start < len(batch):
            group: list[_Ticket] = []
            n = 0
            while start < len(batch) and (not group or n + len(batch[start].events) <= self.max_batch):
                group.append(batch[start])
                n += len(batch[start].events)
                start += 1
            events = [e for t in group for e in t.events]
            try:
                receipts = self.ledger.append_prepared(events)
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
            # Not under the commit lock: with a remote checkpoint key the signature may take a
            # while (or time out), and commits must not wait for it. The ledger locks itself.
            try:
                self.ledger.maybe_checkpoint()
            except Exception:  # noqa: BLE001, S112 - the next tick retries (the ledger keeps the error)
                continue

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=10)
            # Sign what was appended since the last checkpoint: a clean shutdown leaves no unsigned
            # tail (which anyone with the file could cut off unnoticed).
            try:
                if self.ledger.size > (getattr(self.ledger.latest_checkpoint(), "size", 0) or 0):
                    self.ledger.checkpoint()
            except ProvenanceError as exc:
                log.warning("final checkpoint at shutdown not made: %s", exc)
