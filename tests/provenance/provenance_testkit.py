"""Helpers shared by the provenance tests (imported by name; conftest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from contracts import ProvenanceEvent, citizen_ref
from provenance import merkle
from provenance.store import (
    LOWER_LEVELS,
    CheckpointRow,
    Integration,
    Prepared,
    WriteView,
    citizen_key,
    node_id,
)

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


# -- ledger stores (the conformance suite and its child processes) -------------------------------


def prepared(i: int, *, event_id: str | None = None, citizen: str | None = None, time_us: int | None = None,
             body: bytes | None = None) -> Prepared:
    """A ready-to-append item without the event model: stores never parse bodies."""
    if body is None:
        body = orjson.dumps({"event_id": event_id or f"ev-{i:08d}", "n": i, "unit": "臺北 district", "cr": citizen})
    return Prepared(event_id or f"ev-{i:08d}", citizen_key(citizen) if citizen else None,
                    1_700_000_000_000_000 + i if time_us is None else time_us, "pii.read", body,
                    merkle.leaf_hash(body))


class TreeIntegrator:
    """The integrator's job, done plainly (what ``provenance.Ledger`` does with a cached frontier):
    rebuild the frontier from the nodes the store holds at ``view.size``, add the new leaves, hand
    back every node they close, and a checkpoint row when asked to."""

    def __init__(self, *, checkpoint: bool = False) -> None:
        self.checkpoint = checkpoint
        self.calls = 0
        self.sizes: list[int] = []  # view.size seen by each call

    def __call__(self, view: WriteView, new: Sequence[Prepared]) -> Integration:
        self.calls += 1
        self.sizes.append(view.size)
        plan = merkle.range_nodes(0, view.size)
        stored = view.node_hashes([node_id(lv, ix) for lv, ix in plan])
        tree = merkle.CompactRange(view.size, [stored[node_id(lv, ix)] for lv, ix in plan])
        lower: tuple[list[int], list[bytes]] = ([], [])
        upper: tuple[list[int], list[bytes]] = ([], [])
        for p in new:
            for level, index, h in tree.append(p.leaf_hash):
                part = lower if level < LOWER_LEVELS else upper
                part[0].append(node_id(level, index))
                part[1].append(h)
        row = CheckpointRow(tree.size, tree.root(), 1_700_000_000_000_000, f"note\n{tree.size}\n") if self.checkpoint \
            else None
        return Integration(lower, upper, row, tree.size)


def expected_nodes(leaves: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """Every node a tree of these leaves has, as ``(node id, hash)`` in id order."""
    tree = merkle.CompactRange()
    out = [(node_id(level, index), h) for lh in leaves for level, index, h in tree.append(lh)]
    return sorted(out)
