"""Searchable copies of ledger entries in an Elasticsearch data stream (``ztcp-provenance``).

The SQLite ledger stays the record of truth (it holds the tree and the signatures); Elasticsearch
holds each event with its ``seq`` and ``leaf_hash`` for search and dashboards. Documents are written
with the official client's bulk helper using ``create`` and ``_id = event_id``, so a retried batch
is idempotent (409 conflicts are expected and ignored). ``sync`` resumes from the highest ``seq``
already indexed, so a mirror that was down catches up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from provenance.errors import ProvenanceError
from provenance.ledger import Ledger, StoredEntry

DATA_STREAM = "ztcp-provenance"

_MAPPINGS = {
    "dynamic": False,
    "properties": {
        "@timestamp": {"type": "date_nanos"},
        "seq": {"type": "long"},
        "leaf_hash": {"type": "keyword"},
        "event_id": {"type": "keyword"},
        "type": {"type": "keyword"},
        "citizen_ref": {"type": "keyword"},
        "dataset": {"type": "keyword"},
        "record_id": {"type": "keyword"},
        "fields": {"type": "keyword"},
        "decision_id": {"type": "keyword"},
        "effect": {"type": "keyword"},
        "derived_from": {"type": "keyword"},
        "actor": {
            "properties": {
                "id": {"type": "keyword"},
                "type": {"type": "keyword"},
                "unit": {"type": "keyword"},
                "agency": {"type": "keyword"},
            }
        },
        "via": {
            "properties": {"system": {"type": "keyword"}, "channel": {"type": "keyword"}, "ip": {"type": "keyword"}}
        },
        "purpose": {
            "properties": {
                "code": {"type": "keyword"},
                "case_id": {"type": "keyword"},
                "legal_basis": {"type": "keyword"},
                "consent_id": {"type": "keyword"},
            }
        },
        "recipient": {
            "properties": {
                "type": {"type": "keyword"},
                "id": {"type": "keyword"},
                "name": {"type": "keyword"},
                "channel": {"type": "keyword"},
            }
        },
    },
}


class EsMirror:
    """A ``Ledger`` mirror: ``Ledger(..., mirrors=[EsMirror(client)])`` feeds it after each commit."""

    def __init__(self, client: Any, data_stream: str = DATA_STREAM) -> None:
        self.client = client
        self.data_stream = data_stream

    def ensure(self) -> None:
        """Create the index template that makes ``data_stream`` a data stream (idempotent)."""
        self.client.indices.put_index_template(
            name=self.data_stream,
            index_patterns=[self.data_stream],
            data_stream={},
            priority=500,
            template={"mappings": _MAPPINGS},
        )

    @staticmethod
    def document(entry: StoredEntry) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(entry.body)
        doc["@timestamp"] = doc["time"]
        doc["seq"] = entry.seq
        doc["leaf_hash"] = entry.leaf_hash.hex()
        return doc

    def _actions(self, entries: Sequence[StoredEntry]) -> Iterator[dict[str, Any]]:
        for e in entries:
            yield {"_op_type": "create", "_index": self.data_stream, "_id": e.event_id, "_source": self.document(e)}

    def index_entries(self, entries: Sequence[StoredEntry]) -> int:
        from elasticsearch import helpers

        ok, errors = helpers.bulk(self.client, self._actions(entries), raise_on_error=False, refresh=False)
        failures = errors if isinstance(errors, list) else []  # a list unless stats_only
        real = [e for e in failures if next(iter(e.values())).get("status") != 409]  # 409: already indexed
        if real:
            first = next(iter(real[0].values()))
            raise ProvenanceError(f"Elasticsearch refused {len(real)} documents: {first.get('error', {}).get('type')}")
        return ok

    def last_seq(self) -> int:
        if not self.client.indices.exists(index=self.data_stream):
            return -1
        res = self.client.search(index=self.data_stream, size=0, aggs={"max_seq": {"max": {"field": "seq"}}})
        v = res["aggregations"]["max_seq"]["value"]
        return -1 if v is None else int(v)

    def sync(self, ledger: Ledger, chunk: int = 5000) -> int:
        """Index every ledger entry after the highest ``seq`` already in Elasticsearch."""
        start = self.last_seq() + 1
        sent = 0
        batch: list[StoredEntry] = []
        for e in ledger.entries(start):
            batch.append(e)
            if len(batch) >= chunk:
                self.index_entries(batch)
                sent += len(batch)
                batch = []
        if batch:
            self.index_entries(batch)
            sent += len(batch)
        self.client.indices.refresh(index=self.data_stream)
        return sent

    def citizen_events(self, citizen_ref: str, size: int = 1000) -> list[dict[str, Any]]:
        res = self.client.search(
            index=self.data_stream,
            query={"term": {"citizen_ref": citizen_ref}},
            sort=[{"seq": "asc"}],
            size=size,
        )
        return [h["_source"] for h in res["hits"]["hits"]]
