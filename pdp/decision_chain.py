"""The decision log's hash chain (:mod:`contracts.log_chain`), shared by its SQLite and PostgreSQL drivers.

Each entry's chained record is ``{"decision_id", "entry_sha256"}``: the digest of the stored entry
bytes covers every field of the decision (the indexed columns are copies of it), and hashing a
fixed two-key record keeps the append at a few microseconds per entry whatever the entry's size.
Links are computed inside the writer's transaction, after the lock that orders writers (SQLite's
write lock; PostgreSQL's advisory lock), from the head kept in a one-row table: two writers or two
replicas can never chain from the same head, so the chain cannot fork.

Older logs (schema version 1, no links) are chained when migrated to version 2: their existing
entries, in ``seq`` order, in the same transaction as the new schema.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from contracts.chained_log import PruneMark, PruneRun, SignedHead, plan_prune, superseded
from contracts.log_chain import GENESIS, link

LOG_NAME = "decision_log"


def chain_record(decision_id: str, entry: bytes) -> dict[str, str]:
    return {"decision_id": decision_id, "entry_sha256": hashlib.sha256(entry).hexdigest()}


# Decision ids are UUIDs (or, in tests, similar plain tokens): their RFC 8785 form is the id in
# quotes, so the record's canonical bytes can be assembled directly. Anything else takes the
# general path. tests/pdp/test_store_conformance.py checks both agree.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def fast_link(previous: bytes, decision_id: str, entry: bytes) -> bytes:
    """``link(previous, chain_record(decision_id, entry))``, without the general canonicaliser
    (a fifth of the cost) when the id needs no escaping."""
    if not _PLAIN_ID.fullmatch(decision_id):
        return link(previous, chain_record(decision_id, entry))
    digest = hashlib.sha256(entry).hexdigest()
    return hashlib.sha256(b"%s{\"decision_id\":\"%s\",\"entry_sha256\":\"%s\"}"
                          % (previous, decision_id.encode(), digest.encode())).digest()


def chain_links(head: bytes, rows: Iterable[tuple[Any, ...]]) -> tuple[list[bytes], bytes]:
    """The link of each row (``decision_row`` tuples: id first, entry bytes last) and the new head."""
    links = []
    for row in rows:
        head = fast_link(head, row[0], row[-1])
        links.append(head)
    return links, head


def chain_existing(fetch: Callable[[int], list[tuple[int, str, bytes]]],
                   store: Callable[[list[tuple[bytes, int]]], None]) -> bytes:
    """Chain entries written before the chain existed, in ``seq`` order: ``fetch(after_seq)`` gives
    the next page of ``(seq, decision_id, entry)``, ``store([(link, seq)])`` saves links. The head."""
    head, after = GENESIS, 0
    while True:
        rows = fetch(after)
        if not rows:
            return head
        out = []
        for seq, decision_id, entry in rows:
            head = fast_link(head, decision_id, bytes(entry))
            out.append((head, seq))
        store(out)
        after = rows[-1][0]


def held_entry(entry: bytes, citizen_ref: str | None, held: Callable[[str | None, str | None], bool]) -> bool:
    """Whether a legal hold protects this entry (its citizen or the case named in its purpose)."""
    import orjson

    inp = orjson.loads(entry).get("input") or {}
    case = (inp.get("purpose") or {}).get("case_id")
    return held(citizen_ref or (inp.get("resource") or {}).get("citizen_ref"), case)


PRUNE_WINDOW = 5000
"""Entries examined per retention transaction: the decision writer waits for one window at most."""


def prune_plan(rows: list[tuple[int, bytes, str | None, float, bytes | None]], before: float,
               held: Callable[[str | None, str | None], bool] | None,
               marks: list[PruneMark], kept_before: int = 0,
               ) -> tuple[list[PruneRun], list[PruneMark], list[int], int]:
    """From one window of ``(seq, link, citizen_ref, ts, entry)`` rows (``entry`` only when there
    are holds): the runs to delete, the marks to store, the marks they supersede and how many
    entries a hold kept."""
    kept_by_hold = 0
    flagged = []
    for seq, lk, ref, ts, entry in rows:
        deletable = ts < before
        if deletable and held is not None and held_entry(bytes(entry or b"{}"), ref, held):
            deletable = False
            kept_by_hold += 1
        flagged.append((seq, deletable, bytes(lk)))
    runs, new = plan_prune(flagged, marks, kept_before)
    return runs, new, superseded(marks, new), kept_by_hold


def mark_from_row(row: tuple[Any, ...]) -> PruneMark:
    after, through, lk, count, note = row
    return PruneMark(int(after), int(through), bytes(lk), int(count), note)


def head_from_row(row: tuple[Any, ...]) -> SignedHead:
    return SignedHead(int(row[0]), str(row[1]))
