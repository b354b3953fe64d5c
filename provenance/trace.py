"""The auditor's trace: one citizen's history, each event proven against the latest signed checkpoint.

Proofs are built from the stored tree (one batched read for all events) and verified with
``merkle.verify_inclusion`` against a checkpoint whose Ed25519 signature was checked first; the leaf
is recomputed from the stored event, so an edited event shows as *not verified*. Disclosures are
linked to the reads they were ``derived_from``: the lineage of where the citizen's data went.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts.provenance_event import ProvenanceEvent
from provenance import merkle
from provenance.errors import ProofError
from provenance.ledger import Ledger, SignedCheckpoint, StoredEntry


@dataclass(frozen=True)
class TracedEvent:
    seq: int
    leaf_hash: bytes
    event: ProvenanceEvent
    verified: bool | None  # None: appended after the checkpoint used
    problem: str | None = None

    @property
    def status(self) -> str:
        if self.verified is None:
            return "pending"
        return "verified" if self.verified else "NOT VERIFIED"


@dataclass(frozen=True)
class LineageLink:
    disclosure_id: str
    source_id: str
    source_seq: int | None  # None: the source read is not in the ledger (a broken link)
    recipient: str


@dataclass
class Trace:
    citizen_ref: str
    since: datetime | None
    until: datetime | None
    checkpoint: SignedCheckpoint | None
    events: list[TracedEvent]
    lineage: list[LineageLink] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    auditor: str | None = None
    # Upper time bounds from TSA time-stamps of the checkpoints (provenance.timestamp.TimeBounds):
    # "recorded no later than T" for each event a stamped checkpoint covers. None: no TSA configured.
    time_bounds: Any = None

    def recorded_by(self, seq: int) -> tuple[int, datetime] | None:
        """(checkpoint size, TSA time) bounding when ``seq`` was recorded, if a stamped checkpoint covers it."""
        return self.time_bounds.bound(seq) if self.time_bounds else None

    @property
    def all_verified(self) -> bool:
        return all(e.verified for e in self.events)

    def counts(self) -> dict[str, int]:
        out = {"events": len(self.events), "verified": 0, "not_verified": 0, "pending": 0}
        for e in self.events:
            out[{True: "verified", False: "not_verified", None: "pending"}[e.verified]] += 1
        return out


def prove_entries(ledger: Ledger, entries: list[StoredEntry], cp: SignedCheckpoint | None) -> list[TracedEvent]:
    """Verify each entry's inclusion in the checkpointed tree (recomputing its leaf from the body)."""
    if cp is None:
        return [TracedEvent(e.seq, e.leaf_hash, e.event, None, "no signed checkpoint yet") for e in entries]
    covered = [e for e in entries if e.seq < cp.size]
    proofs = dict(
        zip((e.seq for e in covered), ledger.inclusion_proofs([e.seq for e in covered], cp.size), strict=True)
    )
    out = []
    for e in entries:
        if e.seq >= cp.size:
            out.append(TracedEvent(e.seq, e.leaf_hash, e.event, None, "after the latest checkpoint"))
            continue
        leaf = merkle.leaf_hash(e.body)
        try:
            merkle.verify_inclusion(leaf, e.seq, cp.size, proofs[e.seq], cp.root)
            out.append(TracedEvent(e.seq, leaf, e.event, True))
        except ProofError as exc:
            out.append(TracedEvent(e.seq, leaf, e.event, False, f"inclusion proof failed: {exc}"))
    return out


def trace_citizen(
    ledger: Ledger,
    citizen_ref: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    checkpoint: SignedCheckpoint | None = None,
    auditor: str | None = None,
    time_bounds: Any = None,
) -> Trace:
    cp = checkpoint if checkpoint is not None else ledger.latest_checkpoint()
    entries = ledger.citizen_entries(citizen_ref, since, until)
    events = prove_entries(ledger, entries, cp)
    return Trace(citizen_ref, since, until, cp, events, lineage_of(ledger, events), auditor=auditor,
                 time_bounds=time_bounds)


def lineage_of(ledger: Ledger, events: list[TracedEvent]) -> list[LineageLink]:
    by_id = {t.event.event_id: t.seq for t in events}
    disclosures = [t.event for t in events if t.event.derived_from]
    missing = {s for d in disclosures for s in d.derived_from if s not in by_id}
    if missing:
        by_id.update({eid: e.seq for eid, e in ledger.get_by_event_ids(sorted(missing)).items()})
    links = []
    for d in disclosures:
        rcpt = f"{d.recipient.type}:{d.recipient.id}" if d.recipient else ""
        for src in d.derived_from:
            links.append(LineageLink(d.event_id, src, by_id.get(src), rcpt))
    return links
