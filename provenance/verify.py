"""Checking a stored ledger against its signed checkpoints, and locating what was tampered with.

Always: every checkpoint's signature, consistency between consecutive checkpoints (RFC 9162 proofs
built from the stored tree), gaps in the sequence, then a streaming recomputation of every leaf
from its stored event and every tree node from the leaves, compared with what is stored and with
each checkpoint's root (≈200k events/s).

``full=True`` additionally re-parses every event against the schema and re-canonicalises it with the
reference ``rfc8785`` package (catches a writer bug as well as tampering).

The first difference is reported as an ``IntegrityError`` naming the seq and the kind of damage:
``changed`` (event altered), ``missing`` (event removed), ``inserted`` (event added in the
middle), ``reordered`` (events swapped), ``tree`` (stored node altered), ``forged-checkpoint``,
``inconsistent-checkpoint``, ``rewritten`` (differs from a published checkpoint) or ``corrupt`` (the store
itself cannot be read).

Everything is read through the ledger's store (``scan``, ``scan_nodes``, ``checkpoints``,
``node_hashes``), so any driver is verified the same way; what the store returns is never trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from contracts.provenance_event import canonical_bytes_reference, event_from_bytes
from provenance import merkle
from provenance.checkpoint import Checkpoint, open_checkpoint
from provenance.errors import CheckpointError, IntegrityError, ProofError, UnknownEntry
from provenance.ledger import Ledger
from provenance.store import LedgerStore, node_from_id, node_id

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VerifyReport:
    size: int
    checkpoints: int
    latest_checkpoint_size: int
    full: bool
    events_checked: int
    unsigned_tail: int  # events after the latest checkpoint: protected once the next one is signed

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": True,
            "size": self.size,
            "checkpoints": self.checkpoints,
            "latest_checkpoint_size": self.latest_checkpoint_size,
            "full": self.full,
            "events_checked": self.events_checked,
            "unsigned_tail": self.unsigned_tail,
        }


def verify_ledger(
    ledger: Ledger, *, full: bool = False, progress: Progress | None = None, published: Sequence[str] = ()
) -> VerifyReport:
    """Verify the whole ledger; ``published`` are signed notes kept elsewhere (witnessed checkpoints).

    A published checkpoint catches what no local check can: a rewrite of the entire file by someone
    holding the signing key. The ledger's tree at that size must have exactly the published root.
    """
    try:
        report = _verify(ledger, full, progress)
        for note in published:
            _check_published(ledger, note)
        return report
    except ledger.store.read_errors as exc:
        where = ledger.store.location
        raise IntegrityError(f"ledger {where} is unreadable or corrupt: {exc}", kind="corrupt") from None


def _check_published(ledger: Ledger, note: str) -> None:
    try:
        cp = open_checkpoint(note, ledger.verifiers, ledger.origin)
    except CheckpointError as exc:
        raise IntegrityError(f"published checkpoint does not verify: {exc}", kind="forged-checkpoint") from None
    if cp.size > ledger.size:
        raise IntegrityError(
            f"a published checkpoint signs {cp.size} events but the ledger holds {ledger.size}"
            f" (first missing seq {ledger.size})",
            seq=ledger.size,
            kind="missing",
        )
    if ledger.root(cp.size) != cp.root:
        raise IntegrityError(
            f"the ledger's first {cp.size} events differ from the published checkpoint: history was rewritten",
            seq=0,
            kind="rewritten",
        )


def _verify(ledger: Ledger, full: bool, progress: Progress | None) -> VerifyReport:
    ledger.refresh()
    store = ledger.store
    size = ledger.size
    cps = []
    for cp_size, root, _t, note in store.checkpoints():
        try:
            cp = open_checkpoint(note, ledger.verifiers, ledger.origin)
        except CheckpointError as exc:
            raise IntegrityError(
                f"checkpoint at size {cp_size} is forged or altered: {exc}", seq=cp_size, kind="forged-checkpoint"
            ) from None
        if cp.size != cp_size or cp.root != root:
            raise IntegrityError(
                f"checkpoint row at size {cp_size} does not match its signed note",
                seq=cp_size,
                kind="forged-checkpoint",
            )
        cps.append(cp)

    # The streaming pass locates damage precisely (a gap in the sequence included), so it runs
    # before the checks that trust stored nodes.
    checked = _recompute(store, size, cps, progress, deep=full)
    if cps and cps[-1].size > size:
        raise IntegrityError(
            f"events missing: a checkpoint signs {cps[-1].size} events, the ledger holds {size}"
            f" (first missing seq {size})",
            seq=size,
            kind="missing",
        )
    for a, b in zip(cps, cps[1:], strict=False):
        _check_consistency(ledger, a, b)
    if cps and ledger.root(cps[-1].size) != cps[-1].root:
        raise IntegrityError(f"stored tree at size {cps[-1].size} does not match the signed checkpoint", kind="tree")
    latest_size = cps[-1].size if cps else 0
    return VerifyReport(size, len(cps), latest_size, full, checked, size - latest_size)


def _check_consistency(ledger: Ledger, a: Checkpoint, b: Checkpoint) -> None:
    if b.size == a.size:
        if a.root != b.root:
            raise IntegrityError(
                f"two checkpoints at size {a.size} disagree", seq=a.size, kind="inconsistent-checkpoint"
            )
        return
    try:
        proof = ledger.consistency_proof(a.size, b.size) if a.size else []
        if a.size:
            merkle.verify_consistency(a.size, b.size, proof, a.root, b.root)
    except (ProofError, UnknownEntry) as exc:
        raise IntegrityError(
            f"checkpoint at size {b.size} is not consistent with checkpoint at size {a.size}: "
            f"history before seq {a.size} was rewritten ({exc})",
            seq=a.size,
            kind="inconsistent-checkpoint",
        ) from None


def _recompute(  # noqa: C901 - one streaming pass, kept together for speed
    store: LedgerStore, size: int, cps: list[Checkpoint], progress: Progress | None, *, deep: bool
) -> int:
    cp_at = {cp.size: cp for cp in cps}
    frontier = merkle.CompactRange()
    # Two ordered streams, consumed in exactly the order the recomputation produces leaves and nodes
    # (node ids grow in creation order), so one pass needs no lookups and no memory.
    nodes: Iterator[tuple[int, bytes]] = iter(store.scan_nodes())
    expected = 0
    leaf = merkle.leaf_hash
    for seq, stored_leaf, body in store.scan():
        if seq != expected:
            if seq < expected:  # e.g. a row planted below seq 0, where no reader of the log looks
                raise IntegrityError(f"a row at seq {seq} lies outside the ledger's sequence", seq=seq,
                                     kind="inserted")
            raise IntegrityError(f"seq {expected} is missing from the ledger", seq=expected, kind="missing")
        h = leaf(body)
        if h != stored_leaf:
            raise IntegrityError(
                f"event at seq {seq} was changed (its content no longer matches its leaf hash)", seq=seq, kind="changed"
            )
        if deep:
            _deep_check(seq, body)
        for level, index, nh in frontier.append(h):
            row = next(nodes, None)
            want_id = node_id(level, index)
            if row is None or row[0] != want_id or row[1] != nh:
                raise _diagnose(store, seq, level, index, nh, row, want_id)
        expected += 1
        cp = cp_at.get(expected)
        if cp is not None and frontier.root() != cp.root:
            prev = max((s for s in cp_at if s < expected), default=0)
            raise IntegrityError(
                f"events in seq {prev}..{expected - 1} do not match the checkpoint signed at size {expected}",
                seq=prev,
                kind="changed",
            )
        if progress and expected % 65536 == 0:
            progress(expected, size)
    if progress:
        progress(expected, size)
    extra = next(nodes, None)
    if extra is not None:
        level, index = node_from_id(extra[0])
        seq = index << level
        raise IntegrityError(f"events from seq {seq} are missing (tree nodes exist for them)", seq=seq, kind="missing")
    return expected


def _deep_check(seq: int, body: bytes) -> None:
    try:
        ev = event_from_bytes(body)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(event)" for e in exc.errors(include_input=False))
        raise IntegrityError(
            f"event at seq {seq} is not a valid event (fields: {fields})", seq=seq, kind="changed"
        ) from None
    if canonical_bytes_reference(ev) != body:
        raise IntegrityError(f"event at seq {seq} is not in RFC 8785 canonical form", seq=seq, kind="changed")


def _diagnose(store: LedgerStore, seq: int, level: int, index: int, computed: bytes,  # noqa: PLR0913
              row: tuple[int, bytes] | None, want_id: int) -> IntegrityError:
    """Name what happened at the first mismatch, comparing leaves with the stored level-0 nodes."""
    if level > 0:
        first = index << level
        if row is not None and row[0] == want_id:
            return IntegrityError(
                f"stored tree node over seq {first}..{((index + 1) << level) - 1} was altered", seq=first, kind="tree"
            )
        return IntegrityError(f"tree node over seq {first}.. is missing or misplaced", seq=first, kind="tree")
    if row is None:
        return IntegrityError(
            f"an event was inserted at seq {seq} outside the ledger (no tree node records it)", seq=seq, kind="inserted"
        )
    # A leaf differs from the tree's record of leaf `seq`: find where this event really belongs.
    window = 4096
    lo, hi = max(0, seq - window), seq + window
    tree_leaves = store.node_hashes([node_id(0, i) for i in range(lo, hi)])
    stored_leaves = {h: nid >> 6 for nid, h in sorted(tree_leaves.items())}
    original_pos = stored_leaves.get(computed)
    tree_here = tree_leaves.get(node_id(0, seq))

    def leaf_at(s: int) -> bytes | None:
        entry = store.get(s)
        return entry.leaf_hash if entry else None

    if original_pos is not None and original_pos > seq:
        # The event recorded at `original_pos` now sits at `seq`: either events were removed, or swapped.
        back = leaf_at(original_pos)
        if back and tree_here and back == tree_here:
            return IntegrityError(
                f"events at seq {seq} and {original_pos} were swapped (reordered)", seq=seq, kind="reordered"
            )
        return IntegrityError(
            f"event(s) from seq {seq} to {original_pos - 1} are missing (later events were renumbered)",
            seq=seq,
            kind="missing",
        )
    nxt = leaf_at(seq + 1)
    if nxt and tree_here and nxt == tree_here:
        return IntegrityError(f"an event was inserted at seq {seq} (later events shifted)", seq=seq, kind="inserted")
    if original_pos is not None and original_pos < seq:
        return IntegrityError(
            f"event at seq {seq} duplicates or was moved from seq {original_pos}", seq=seq, kind="reordered"
        )
    return IntegrityError(f"event at seq {seq} was changed (it does not match the tree)", seq=seq, kind="changed")


def check_unsigned_tail(ledger: Ledger, report: VerifyReport, max_age: int) -> None:
    """Events after the latest checkpoint are protected by nothing until the next one: anyone with
    the file can cut them off. Checkpoints are made every minute while ztcp serves, and at shutdown,
    so a tail older than ``max_age`` means checkpointing stopped — or events were put in around it."""
    if not report.unsigned_tail:
        return
    latest = ledger.latest_checkpoint()
    if latest is None:
        return  # a young ledger that has not signed yet: nothing older to compare with
    age = datetime.now(latest.time.tzinfo) - latest.time
    if age.total_seconds() > max_age:
        raise IntegrityError(
            f"{report.unsigned_tail} events after the latest checkpoint (size {latest.size}, signed "
            f"{int(age.total_seconds())} s ago) are not signed: checkpointing has stopped or events were "
            "added around it; run `ztcp audit checkpoint` once the cause is known",
            seq=latest.size, kind="unsigned-tail")
