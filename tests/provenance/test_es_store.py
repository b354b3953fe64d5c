"""Elasticsearch mirror: runs only against a real cluster (ZTCP_ES_URL)."""

from __future__ import annotations

import os
import uuid

import pytest
from provenance_testkit import cref, make_event

from provenance import Ledger
from provenance.es_store import EsMirror

ES_URL = os.environ.get("ZTCP_ES_URL")
pytestmark = [
    pytest.mark.es,
    pytest.mark.skipif(not ES_URL, reason="ZTCP_ES_URL is not set: no Elasticsearch server to test against"),
]


@pytest.fixture
def mirror():  # noqa: ANN201
    from elasticsearch import Elasticsearch

    client = Elasticsearch(ES_URL)
    m = EsMirror(client, data_stream=f"ztcp-provenance-test-{uuid.uuid4().hex[:8]}")
    m.ensure()
    yield m
    client.indices.delete_data_stream(name=m.data_stream, ignore_unavailable=True)
    client.indices.delete_index_template(name=m.data_stream, ignore_unavailable=True)


def test_mirror_indexes_seq_and_leaf_hash_idempotently(mirror: EsMirror, ledger_path, signing_key) -> None:  # noqa: ANN001
    with Ledger(ledger_path, signing_key, "es/test", mirrors=[mirror]) as led:
        led.append([make_event(i) for i in range(6)])
        led.flush_mirrors()
        mirror.client.indices.refresh(index=mirror.data_stream)
        docs = mirror.citizen_events(cref(0))
        assert [d["seq"] for d in docs] == [0, 3]
        assert docs[0]["leaf_hash"] == led.get(0).leaf_hash.hex()
        assert mirror.sync(led) == 0  # nothing new
        mirror.index_entries(list(led.entries()))  # a retried batch is harmless (409s ignored)
        mirror.client.indices.refresh(index=mirror.data_stream)
        assert len(mirror.citizen_events(cref(0))) == 2


def test_sync_catches_up_after_outage(mirror: EsMirror, ledger_path, signing_key) -> None:  # noqa: ANN001
    with Ledger(ledger_path, signing_key, "es/test") as led:
        led.append([make_event(i) for i in range(9)])
        assert mirror.sync(led) == 9
        led.append([make_event(i) for i in range(9, 12)])
        assert mirror.sync(led) == 3
        assert mirror.last_seq() == 11
