"""An unreachable Elasticsearch must never block or lose ledger appends (the ledger is the truth)."""

from __future__ import annotations

import time

from elasticsearch import Elasticsearch
from provenance_testkit import make_event

from provenance import Ledger
from provenance.es_store import EsMirror


def test_unreachable_mirror_does_not_block_appends(ledger_path, signing_key) -> None:  # noqa: ANN001
    client = Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2)  # nothing listens on 9
    seen: list[Exception] = []
    with Ledger(ledger_path, signing_key, "es/test", mirrors=[EsMirror(client)], on_mirror_error=seen.append) as led:
        t = time.monotonic()
        for i in range(3):
            rs = led.append([make_event(i * 3 + j) for j in range(3)])
        assert time.monotonic() - t < 1.5  # commits never wait for the mirror
        assert [r.seq for r in rs] == [6, 7, 8] and led.size == 9
        led.flush_mirrors()
    assert len(seen) == 3, "every failed hand-off was reported (the later ones via sync, which also fails)"
    assert "A123456789" not in str(seen[0])


def test_document_shape() -> None:
    from provenance.ledger import StoredEntry

    e = make_event(1)
    from contracts import canonical_bytes
    from provenance import merkle

    body = canonical_bytes(e)
    doc = EsMirror.document(StoredEntry(4, e.event_id, merkle.leaf_hash(body), body))
    assert doc["seq"] == 4 and doc["@timestamp"] == doc["time"] and len(doc["leaf_hash"]) == 64
    assert doc["citizen_ref"] == e.citizen_ref


class ListMirror:
    """A tiny in-memory mirror (our Mirror protocol, with EsMirror's resumable ``sync``)."""

    def __init__(self) -> None:
        self.docs: dict[int, str] = {}
        self.down = True

    def index_entries(self, entries) -> None:  # noqa: ANN001
        if self.down:
            raise ConnectionError("mirror down")
        self.docs.update({e.seq: e.event_id for e in entries})

    def sync(self, ledger) -> int:  # noqa: ANN001
        start = max(self.docs, default=-1) + 1
        batch = list(ledger.entries(start))
        self.index_entries(batch)
        return len(batch)


def test_mirror_catches_up_after_an_outage(ledger_path, signing_key) -> None:  # noqa: ANN001
    m = ListMirror()
    errors: list[Exception] = []
    with Ledger(ledger_path, signing_key, "es/test", mirrors=[m], on_mirror_error=errors.append) as led:
        led.append([make_event(i) for i in range(4)])
        led.flush_mirrors()
        assert errors and not m.docs
        m.down = False
        led.append([make_event(i) for i in range(4, 6)])
        led.flush_mirrors()
        assert sorted(m.docs) == list(range(6))  # the batch lost during the outage was re-sent
