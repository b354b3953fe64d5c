"""The storage seam under the provenance ledger: what a driver must do, and the records it trades in.

The ledger is split the way Trillian and Tessera split a transparency log:

* the **store** (a driver: :class:`provenance.sqlite_store.SqliteLedgerStore`,
  :class:`provenance.postgres_store.PostgresLedgerStore`) is the *sequencer* and the disk. Under
  its write lock it assigns the next seqs, makes an append idempotent by ``event_id``, commits
  durably before anyone is told, and answers lookups;
* the **ledger** (:class:`provenance.ledger.Ledger`) is the *integrator*: canonical bytes and leaf
  hashes, the tree's new nodes, the signed checkpoints, mirrors and publishing. It knows nothing of
  SQL.

One append is one call, :meth:`LedgerStore.append` ``(items, integrate)``. The store opens its write
transaction, learns the tree size under the lock (another process may have appended), works out
which items are new, and calls ``integrate(view, new)``; the integrator returns the new tree nodes
(and perhaps a checkpoint signed over the new size), and the store writes entries, nodes and
checkpoint in that same transaction. Entries never exist without their nodes, so a crash at any
point leaves whole batches only. Tessera's MySQL driver integrates inside its sequencing
transaction the same way; a server database with many writers can do so too (``SELECT … FOR
UPDATE`` on one tree-state row), or split the two (the PostgreSQL driver's default: writers only
sequence, one integrator integrates in the background; see ``IntegratesInBackground``) without the
ledger's read side changing: readers of the tree only ever see integrated entries.

Records are plain tuples where they are made 100k times a second.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson

from contracts.provenance_event import ProvenanceEvent, event_from_bytes

# Tree nodes are addressed by one integer, ``node_id(level, index)`` = (last leaf << 6) | level: ids
# grow in the order the nodes are created (a leaf closes only nodes that end at it), so every node
# table is written append-only, and a range of ids is a range of leaves.
#
# A new batch's nodes come in two groups: the bottom LOWER_LEVELS levels (inside each 64-leaf
# block: ~97 % of the rows, written beside their leaves) and the levels above (few, and read by
# every proof). A driver may keep them together or apart; the SQLite driver keeps the upper ones in
# their own small table so a proof's upper siblings stay cached at 10 M events and beyond.
LOWER_LEVELS = 6


def node_id(level: int, index: int) -> int:
    """Storage key of node (level, index): its last leaf, shifted, plus its level."""
    return ((((index + 1) << level) - 1) << 6) | level


def node_from_id(nid: int) -> tuple[int, int]:
    level = nid & 63
    last = nid >> 6
    return level, ((last + 1) >> level) - 1


@functools.lru_cache(maxsize=1 << 16)  # the same citizens recur across a batch and across batches
def citizen_key(ref: str) -> int:
    """Compact index key of a citizen_ref: a 64-bit BLAKE2b of it, signed (fits any SQL BIGINT).

    Part of the contract, not of a driver: the ledger computes it once per event, every driver
    indexes it. It may collide, so the ledger re-checks the body of every match.
    """
    return int.from_bytes(hashlib.blake2b(ref.encode(), digest_size=8).digest(), "big", signed=True)


class Prepared(NamedTuple):
    """An event ready to append: its canonical bytes and leaf hash, and the indexed columns."""

    event_id: str
    citizen_key: int | None
    time_us: int
    type: str
    body: bytes
    leaf_hash: bytes


class Receipt(NamedTuple):
    """What a caller gets once its event is durable (a tuple: cheap at 100k/s)."""

    seq: int
    leaf_hash: bytes
    event_id: str
    duplicate: bool = False


@dataclass(frozen=True)
class StoredEntry:
    seq: int
    event_id: str
    leaf_hash: bytes
    body: bytes

    @property
    def event(self) -> ProvenanceEvent:
        return event_from_bytes(self.body)

    def document(self) -> dict[str, Any]:
        return entry_document(self.seq, self.leaf_hash, self.body)


def entry_document(seq: int, leaf_hash: bytes, body: bytes) -> dict[str, Any]:
    """A ledger entry as readers outside the ledger get it: the event as stored plus ``seq`` and
    ``leaf_hash`` (hex). One shape for ``events_after`` (the SIEM's live feed) and ``ztcp audit export
    --format jsonl``."""
    doc: dict[str, Any] = orjson.loads(body)
    doc["seq"], doc["leaf_hash"] = seq, leaf_hash.hex()
    return doc


class CheckpointRow(NamedTuple):
    """A stored checkpoint, unverified: the note is authoritative, size and root are its index."""

    size: int
    root: bytes
    time_us: int
    note: str


NodeRows = tuple[list[int], list[bytes]]  # node ids and their hashes, in creation (= id) order


class Integration(NamedTuple):
    """What the integrator hands the store to write with a batch.

    ``state`` is the integrator's own (its new tree frontier, say): the store does not look at it
    and hands it back in :class:`Appended` once the batch is durable, so the integrator adopts it
    only after the commit.
    """

    nodes: NodeRows  # levels < LOWER_LEVELS
    upper: NodeRows  # levels >= LOWER_LEVELS
    checkpoint: CheckpointRow | None = None
    state: Any = None


class WriteView(Protocol):
    """The store as the integrator sees it inside the write transaction (its own snapshot)."""

    size: int  # entries committed before this batch: the first new seq

    def node_hashes(self, ids: Collection[int]) -> dict[int, bytes]: ...

    def latest_checkpoint(self) -> CheckpointRow | None: ...


Integrate = Callable[[WriteView, Sequence[Prepared]], Integration]


@dataclass
class Appended:
    """The outcome of one durable append."""

    receipts: list[Receipt]  # one per item, in order; duplicates carry the stored seq and leaf hash
    first_seq: int  # seq of written[0]
    written: Sequence[Prepared]  # the items that were new, in seq order (empty: all were duplicates)
    integration: Integration | None  # what integrate returned (None when nothing was new)


def assign_seqs(items: Sequence[Prepared], size: int, known: dict[str, Receipt]
                ) -> tuple[Sequence[Prepared], list[Receipt]]:
    """The sequencer's rule, shared by every driver: split a batch into the items to write (seqs
    from ``size``, in batch order) and a receipt for every item. ``known`` holds the receipts of
    event ids already stored; a later repeat of an id within the batch gets its first occurrence's."""
    make = tuple.__new__  # NamedTuple's own __new__ is a Python function: too slow at 100k/s
    if not known and len({p.event_id for p in items}) == len(items):
        return items, [make(Receipt, (s, p.leaf_hash, p.event_id, False)) for s, p in enumerate(items, size)]
    new: list[Prepared] = []
    receipts: list[Receipt] = []
    first: dict[str, int] = {}  # event id -> index of its first receipt in this batch
    seq = size
    for p in items:
        eid = p.event_id
        prior = known.get(eid)
        if prior is None and eid in first:
            r = receipts[first[eid]]
            prior = Receipt(r.seq, r.leaf_hash, eid, True)
        if prior is not None:
            receipts.append(prior)
            continue
        first[eid] = len(receipts)
        receipts.append(Receipt(seq, p.leaf_hash, eid, False))
        new.append(p)
        seq += 1
    return new, receipts


class IntegratesInBackground(Protocol):
    """What a store that separates sequencing from integration adds (``integrates_in_background``).

    Its ``append`` sequences and commits the entries and returns ``integration=None``: the events
    are durable and acknowledged, and join the tree later. ``size`` and every read of the tree
    (``get``, ``entries``, ``citizen_entries``, ``scan``, proofs) cover the integrated entries only;
    ``by_event_ids`` finds an event as soon as it is acknowledged. One process at a time integrates.
    """

    integrates_in_background: bool

    def sequenced_size(self) -> int:
        """Entries acknowledged (integrated or not)."""
        ...

    def start_integrator(self, integrate: Integrate, committed: Callable[[Appended], None], *,
                         bodies: bool = False) -> None:
        """Be a candidate integrator (a thread): call ``integrate`` on waiting entries whenever this
        process holds the role, and ``committed`` after each integration commit."""
        ...

    def stop_integrator(self) -> None: ...

    def integrate_pending(self, integrate: Integrate, committed: Callable[[Appended], None], *,
                          timeout: float = 10.0, bodies: bool = False) -> bool:
        """Return once everything acknowledged before the call is integrated (here, if no other
        process is integrating); False if ``timeout`` passed first."""
        ...


@runtime_checkable
class BackgroundIntegration(Protocol):
    """A store whose writers only sequence entries and one integrator per database extends the tree
    behind them (:class:`provenance.postgres_store.PostgresLedgerStore` configured "background")."""

    integrates_in_background: bool

    def start_integrator(self, integrate: Integrate, committed: Callable[[Appended], None], *,
                         bodies: bool = False) -> None: ...

    def stop_integrator(self) -> None: ...

    def integrate_pending(self, integrate: Integrate, committed: Callable[[Appended], None], *,
                          timeout: float = 10.0, bodies: bool = False) -> bool: ...


class LedgerStore(Protocol):
    """A storage driver for the provenance ledger.

    **Durability.** ``append`` and ``add_checkpoint`` return only once their transaction is on
    stable storage (SQLite: WAL with ``synchronous=FULL``); the ledger acknowledges nothing earlier.

    **One sequence.** Several processes (``ztcp serve`` and a CLI command) may append at once: the
    store serialises them and gives every entry exactly one seq, with no gaps. ``integrate`` runs
    while the store holds that lock and sees the size the batch will start at.

    **Idempotency.** An item whose ``event_id`` is already stored, or appears earlier in the same
    batch, is not written again: its receipt is the stored one (``duplicate=True``).

    **Append-only.** Entries, nodes and checkpoints are never changed once written: a node id that
    is already stored fails the write (the tree is append-only), a checkpoint at a stored size is
    kept as first written.

    **Errors.** A write that cannot be made raises :class:`~provenance.errors.LedgerUnavailable`
    after rolling everything back (no partial batch); an exception raised by ``integrate`` rolls
    back and propagates unchanged. Readers raise one of ``read_errors`` when the stored data cannot
    be read (unreachable, locked, or damaged: ``verify`` reports the last as ``corrupt``).

    **Reads are not verified.** The store returns what it holds; the ledger and ``verify`` check it
    against the tree and the signed checkpoints. Tampering is the verifier's business, not the store's.
    """

    SCHEMA_VERSION: int  # the layout this driver writes; older layouts are upgraded by ``open``
    read_errors: tuple[type[BaseException], ...]
    location: str  # for messages (a path; a server's DSN without its password)

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self, origin: str, verifier_key: str) -> None:
        """Create the schema (recording its version, the origin and the first verifier key) or
        check an existing one: a store of another origin is refused (``ProvenanceError``), an
        older layout is upgraded in one transaction, a newer one refused (``SchemaVersionError``)."""
        ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...

    # -- state -------------------------------------------------------------------------------------

    def size(self) -> int:
        """Committed entries (the highest seq + 1), as of now."""
        ...

    def node_hashes(self, ids: Collection[int]) -> dict[int, bytes]:
        """The stored hashes of these node ids; ids not stored are absent from the result."""
        ...

    # -- writing -----------------------------------------------------------------------------------

    def append(self, items: Sequence[Prepared], integrate: Integrate) -> Appended:
        """Durably append a batch in one transaction; see the class notes.

        ``integrate`` is called inside the transaction with the items the attempt takes as new. A
        driver may try optimistically first (the SQLite driver lets its unique index find stored
        duplicates) and call it again on the retry, so it must not keep state across calls; its
        result counts only if the transaction commits (``Appended.integration``)."""
        ...

    def add_checkpoint(self, row: CheckpointRow) -> None:
        """Store a checkpoint made outside an append (no-op if one at that size exists)."""
        ...

    # -- lookups -----------------------------------------------------------------------------------

    def get(self, seq: int) -> StoredEntry | None: ...

    def by_event_ids(self, event_ids: Sequence[str]) -> dict[str, StoredEntry]: ...

    def entries(self, start: int, end: int) -> Iterator[StoredEntry]:
        """Entries with ``start <= seq < end`` in seq order."""
        ...

    def citizen_entries(self, key: int, since_us: int, until_us: int, after_seq: int = -1) -> Iterator[StoredEntry]:
        """Entries indexed under ``citizen_key`` ``key`` with ``since_us <= time_us < until_us`` and
        ``seq > after_seq``, in seq order. Candidates: a key may collide; the caller checks bodies."""
        ...

    # -- checkpoints -------------------------------------------------------------------------------

    def latest_checkpoint(self) -> CheckpointRow | None: ...

    def checkpoint_at(self, size: int) -> CheckpointRow | None: ...

    def checkpoints(self) -> Iterator[CheckpointRow]:
        """Every stored checkpoint row in size order, as stored (for ``verify``)."""
        ...

    # -- whole-store reads: verify and feeds ---------------------------------------------------------

    def scan(self, start: int | None = None, limit: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        """``(seq, leaf_hash, body)`` rows in seq order, every stored row as it is (gaps, odd seqs
        and all: the verifier must see what an attacker left). ``start=None``: from the first row."""
        ...

    def scan_nodes(self) -> Iterator[tuple[int, bytes]]:
        """Every stored ``(node id, hash)`` in id order, i.e. in the order the tree created them."""
        ...

    def probe(self) -> None:
        """Prove the store can durably write right now (``/readyz``): take the write lock, write a
        row outside the log, commit. Raises :class:`LedgerUnavailable` within a few seconds if not."""
        ...

    def backup_to(self, path: Path) -> None:
        """Write a consistent copy of the store to ``path`` in one step: one point of the sequence,
        whole batches only, while writers go on. Callable without ``open`` (``ztcp backup`` copies a
        store that ``ztcp serve`` is writing). SQLite: a self-contained SQLite file. A server
        database would naturally write the same SQLite form from one snapshot, which keeps
        ``ztcp backup verify`` and restore independent of the driver."""
        ...
