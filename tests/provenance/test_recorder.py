"""Recorder: thread-safe group commit, idempotency, failing closed."""

from __future__ import annotations

import threading
import time

import pytest
from provenance_testkit import make_event

from provenance import Ledger, LedgerUnavailable, Recorder


def test_concurrent_records_are_batched_and_unique(ledger: Ledger) -> None:
    rec = Recorder(ledger)
    commits = []
    orig = ledger.append_prepared

    def counting_append(events):  # a real append, counted (not a mock of the ledger)
        commits.append(len(events))
        return orig(events)

    ledger.append_prepared = counting_append  # type: ignore[method-assign]
    results: dict[int, int] = {}
    errors = []

    def worker(k: int) -> None:
        try:
            for j in range(25):
                r = rec.record(make_event(k * 100 + j))
                results[k * 100 + j] = r.seq
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results.values()) == list(range(200))
    assert sum(commits) == 200
    assert len(commits) < 200  # concurrent callers shared transactions
    assert ledger.size == 200


def test_record_many_and_idempotent(ledger: Ledger) -> None:
    rec = Recorder(ledger)
    evs = [make_event(i) for i in range(5)]
    rs = rec.record_many(evs)
    again = rec.record(evs[2])
    assert again.seq == rs[2].seq and again.event_id == evs[2].event_id
    assert ledger.size == 5


def test_failure_fails_every_waiter_closed(ledger: Ledger) -> None:
    rec = Recorder(ledger)
    rec.record(make_event(0))
    ledger.close()
    with pytest.raises(LedgerUnavailable):
        rec.record(make_event(1))


def test_rejects_non_events(ledger: Ledger) -> None:
    with pytest.raises(TypeError):
        Recorder(ledger).record_many([{"type": "pii.read"}])  # type: ignore[list-item]


def test_timer_checkpoints_idle_tail(ledger_path, signing_key) -> None:  # noqa: ANN001
    with Ledger(ledger_path, signing_key, "o", checkpoint_every=1000, checkpoint_interval=0.1) as led:
        rec = Recorder(led, checkpoint_timer=True)
        try:
            led.checkpoint_interval = 1000  # first append must not checkpoint by itself
            rec.record(make_event(1))
            assert led.latest_checkpoint() is None
            led.checkpoint_interval = 0.1
            deadline = time.time() + 5
            while led.latest_checkpoint() is None and time.time() < deadline:
                time.sleep(0.05)
            assert led.latest_checkpoint() is not None and led.latest_checkpoint().size == 1
        finally:
            rec.close()
