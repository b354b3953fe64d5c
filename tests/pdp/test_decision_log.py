"""The decision log: backpressure, failure and recovery with nothing lost, the SIEM feed, ES copy."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from pdp.decision_log import DecisionLog, ElasticsearchSink
from pdp.errors import DecisionLogError


def entry(i: int) -> dict:
    return {"decision_id": f"d-{i:05d}", "timestamp": "2026-11-23T02:00:00Z", "ts": 1795399200.0 + i,
            "path": "ztcp/authz/decision", "input": {"subject": {"id": "emp-1"}, "resource": {}},
            "result": {"effect": "permit"}, "bundles": {"ztcp": {"revision": "r1"}}}


def test_entries_are_stored_in_order_and_fed_to_the_siem(tmp_path):
    log = DecisionLog(tmp_path / "d.db")
    for i in range(250):
        log.submit(entry(i))
    assert log.flush()
    assert log.count() == 250
    batch, cursor = log.iter_since(0, limit=100)
    assert [e["decision_id"] for e in batch] == [f"d-{i:05d}" for i in range(100)]
    rest, cursor2 = log.iter_since(cursor, limit=1000)
    assert len(rest) == 150 and cursor2 > cursor
    assert log.iter_since(cursor2) == ([], cursor2)
    assert [e["decision_id"] for e in log.entries(last=2)] == ["d-00248", "d-00249"]
    log.close()


def test_store_failure_then_recovery_loses_nothing(tmp_path):
    path = tmp_path / "d.db"
    log = DecisionLog(path, busy_timeout=0.1, queue_size=100, enqueue_timeout=0.05)
    log.submit(entry(0))
    assert log.flush()
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database: writes fail
    for i in range(1, 6):
        log.submit(entry(i))
    deadline = time.time() + 5
    while log.healthy and time.time() < deadline:
        time.sleep(0.05)
    assert not log.healthy and "locked" in log.last_error
    with pytest.raises(DecisionLogError, match="unavailable"):
        log.submit(entry(99))  # new decisions are refused (→ deny) while the log is down
    blocker.rollback()
    blocker.close()
    assert log.flush(timeout=10)
    assert log.healthy
    assert log.count() == 6  # the five queued during the outage were retried, none dropped
    assert log.get("d-00099") is None
    log.close()


def test_full_queue_applies_backpressure_then_refuses(tmp_path):
    path = tmp_path / "d.db"
    log = DecisionLog(path, busy_timeout=5, queue_size=2, enqueue_timeout=0.05, batch_size=1)
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    accepted, refused = 0, 0
    for i in range(10):
        try:
            log.submit(entry(i))
            accepted += 1
        except DecisionLogError as exc:
            assert "queue full" in str(exc)
            refused += 1
    blocker.rollback()
    blocker.close()
    assert refused > 0 and accepted >= 2
    assert log.flush(timeout=15)
    assert log.count() == accepted
    log.close()


@pytest.mark.es
@pytest.mark.skipif(not os.environ.get("ZTCP_ES_URL"), reason="needs Elasticsearch: set ZTCP_ES_URL")
def test_entries_reach_the_elasticsearch_data_stream(tmp_path):
    from elasticsearch import Elasticsearch

    es = Elasticsearch(os.environ["ZTCP_ES_URL"])
    log = DecisionLog(tmp_path / "d.db", sinks=[ElasticsearchSink(es, stream="ztcp-decisions-test")])
    log.submit(entry(int(time.time())))
    assert log.flush()
    es.indices.refresh(index="ztcp-decisions-test")
    assert es.count(index="ztcp-decisions-test")["count"] >= 1
    log.close()
