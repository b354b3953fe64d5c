"""Helpers shared by the provenance tests (imported by name; conftest puts this folder on sys.path)."""

from __future__ import annotations

from typing import Any

from contracts import ProvenanceEvent, citizen_ref

BLIND_KEY = b"test-blind-index-key-32-bytes-ok"
VALID_IDS = ["A123456789", "F131104093", "B287654326"]  # check digits valid


def cref(i: int = 0) -> str:
    return citizen_ref(VALID_IDS[i % len(VALID_IDS)], BLIND_KEY)


def make_event(i: int = 0, **over: Any) -> ProvenanceEvent:
    data: dict[str, Any] = {
        "type": "pii.read",
        "actor": {"id": f"staff-{i % 7:04d}", "unit": "Taipei District Office", "agency": "BLI"},
        "via": {"system": "counter-app", "channel": "counter", "ip": "10.0.0.5"},
        "citizen_ref": cref(i),
        "dataset": "insured_persons",
        "record_id": f"rec-{i}",
        "fields": ["name", "address"],
        "purpose": {"code": "benefit-review", "case_id": f"C-{i % 3}"},
        "decision_id": f"dec-{i}",
        "effect": "permit",
    }
    data.update(over)
    return ProvenanceEvent.model_validate(data)
