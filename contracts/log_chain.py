"""A hash chain over an append-only log: what makes the decision log, the key audit and the alert
history tamper-evident (the provenance ledger has its own Merkle tree).

Each record carries ``link = SHA-256(previous link || canonical bytes of the record)``; the first
record chains from :data:`GENESIS`. Altering, removing or reordering any record changes every later
link, so a verifier that holds only the newest link (a signed head) detects it, and
:func:`verify_chain` names the first record that no longer fits.

Why a chain and not a second Merkle log: these logs are read front to back by auditors, never asked
for single-record proofs, and a chain costs one hash per append. Retention deletes a log's oldest
records; the verifier then starts from the link of the last deleted record (its *prune mark*), so
the chain stays checkable after deletion.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785

GENESIS = bytes(32)
"""The link the first record of every log chains from."""


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """The canonical bytes of one record (RFC 8785 JSON): the same on every driver and platform.
    Integers beyond ±2**53 are refused (RFC 8785 cannot represent them exactly): store them as text."""
    return rfc8785.dumps(dict(record))


def link(previous: bytes, record: Mapping[str, Any]) -> bytes:
    """The link of ``record`` appended after a record whose link is ``previous``."""
    if len(previous) != 32:
        raise ValueError("a chain link is 32 bytes")
    return hashlib.sha256(previous + record_bytes(record)).digest()


@dataclass(frozen=True)
class ChainBreak:
    """The first record that does not fit its chain: its position (the log's own sequence number or
    id) and why, in words that name no field value."""

    position: int | str
    reason: str


def verify_chain(
    records: Iterable[tuple[int | str, Mapping[str, Any], bytes]],
    start: bytes = GENESIS,
) -> tuple[ChainBreak | None, bytes, int]:
    """Walk ``(position, record, stored link)`` in log order from ``start``.

    Returns ``(first break or None, last good link, records checked)``. Links are compared in
    constant time: a verifier must not leak how much of a forged link was right."""
    previous = start
    checked = 0
    for position, record, stored in records:
        expected = link(previous, record)
        if not hmac.compare_digest(expected, bytes(stored)):
            return ChainBreak(position, "its link does not match the records before it "
                                        "(altered, inserted, removed or reordered)"), previous, checked
        previous = expected
        checked += 1
    return None, previous, checked


def heads_match(expected: bytes, actual: bytes) -> bool:
    """Constant-time comparison of two chain heads (e.g. a signed head against the recomputed one)."""
    return hmac.compare_digest(expected, actual)
