"""Alerts in the `ztcp-alerts` data stream (needs a real Elasticsearch: ZTCP_ES_URL)."""

from __future__ import annotations

import os
import time

import pytest

from demo.siem_week import Traffic
from siem_rules import ElasticAlertSink, Engine, RulePack, connect

pytestmark = pytest.mark.es

ES_URL = os.environ.get("ZTCP_ES_URL")


@pytest.mark.skipif(not ES_URL, reason="ZTCP_ES_URL not set: no Elasticsearch server to test against")
def test_alerts_are_appended_to_the_data_stream() -> None:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(ES_URL)
    stream = f"ztcp-alerts-test-{int(time.time())}"
    sink = ElasticAlertSink(client, data_stream=stream)
    engine = Engine(connect(":memory:"), RulePack(), sinks=[sink])
    t = Traffic(seed=1, employees=1)
    engine.store.ingest(t.incidents()["verify"][1])
    engine.run()
    (alert,) = engine.alerts.list()
    client.indices.refresh(index=stream)
    hits = client.search(index=stream, query={"term": {"alert_id": alert.alert_id}})["hits"]["hits"]
    assert hits and hits[0]["_source"]["rule_name"] == "ledger_verification_failure"
    assert hits[0]["_source"]["risk_score"] == 99
    client.indices.delete_data_stream(name=stream)
