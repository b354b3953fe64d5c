"""An unreachable Elasticsearch must never block or lose ledger appends (the ledger is the truth)."""

from __future__ import annotations

from elasticsearch import Elasticsearch
from provenance_testkit import make_event

from provenance import Ledger
from provenance.es_store import EsMirror


def test_unreachable_mirror_does_not_block_appends(ledger_path, signing_key) -> None:  # noqa: ANN001
    client = Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2)  # nothing listens on 9
    seen: list[Exception] = []
    with Ledger(ledger_path, signing_key, "es/test", mirrors=[EsMirror(client)], on_mirror_error=seen.append) as led:
        rs = led.append([make_event(i) for i in range(3)])
        assert [r.seq for r in rs] == [0, 1, 2] and led.size == 3
    assert seen, "the mirror failure was reported"
    assert "A123456789" not in str(seen[0])


def test_document_shape() -> None:
    from provenance.ledger import StoredEntry

    e = make_event(1)
    from provenance import canonical_bytes, merkle

    body = canonical_bytes(e)
    doc = EsMirror.document(StoredEntry(4, e.event_id, merkle.leaf_hash(body), body))
    assert doc["seq"] == 4 and doc["@timestamp"] == doc["time"] and len(doc["leaf_hash"]) == 64
    assert doc["citizen_ref"] == e.citizen_ref
