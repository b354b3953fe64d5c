"""The append-only provenance ledger: RFC 9162 Merkle tree, stored nodes, signed checkpoints.

The ledger is the *integrator* over a :class:`~provenance.store.LedgerStore` (the *sequencer* and
the disk; see ``store.py``): it turns events into RFC 8785 bytes and leaf hashes, builds the tree
nodes each batch closes, signs C2SP checkpoints (every N events, every T seconds via ``Recorder``'s
timer, and on demand), publishes them, feeds mirrors, and answers proofs from the stored nodes
(O(log n) point reads). It holds no SQL: ``Ledger(path, key, origin)`` uses the SQLite driver
(:mod:`provenance.sqlite_store`) on that file, ``Ledger(store=…, signing_key=key, origin=origin)``
any other driver.

Every append is one store transaction (durable before it returns, idempotent by ``event_id``), run
under this object's lock; group commit is the ``Recorder``'s job. The cached tree state (size and
frontier) is adopted only after a commit, and re-read whenever the store's size moved under us
(another process, or another ``Ledger`` on the same store, appended).

A store may integrate in the background (``store.integrates_in_background``: the PostgreSQL driver
by default): its ``append`` only sequences and commits, and one integrator among the processes
sharing the database runs ``_integrate`` later, in a transaction of its own. ``Ledger(…,
integrator=True)`` makes this process a candidate (``ztcp serve`` does); ``integrate_pending`` (and
so ``checkpoint``) waits until everything acknowledged so far is in the tree, integrating it here
when no integrator is running.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.provenance_event import ProvenanceEvent, canonical_bytes
from provenance import merkle
from provenance.checkpoint import (
    Checkpoint,
    Ed25519Signer,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from provenance.errors import (
    CheckpointError,
    CheckpointUnavailable,
    LedgerUnavailable,
    UnknownEntry,
)
from provenance.sqlite_store import SqliteLedgerStore
from provenance.store import (
    LOWER_LEVELS,
    Appended,
    BackgroundIntegration,
    CheckpointRow,
    Integration,
    LedgerStore,
    Prepared,
    Receipt,
    StoredEntry,
    WriteView,
    citizen_key,
    entry_document,
    node_from_id,
    node_id,
)

__all__ = [  # the records live in provenance.store; importing them from here keeps working
    "Ledger",
    "Mirror",
    "Prepared",
    "Receipt",
    "SignedCheckpoint",
    "StoredEntry",
    "citizen_key",
    "node_from_id",
    "node_id",
]

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(t: datetime) -> int:
    return ((t if t.tzinfo else t.replace(tzinfo=UTC)) - _EPOCH) // _US  # exact, no float rounding


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str
    time: datetime

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root


class Mirror(Protocol):
    """A searchable secondary copy (e.g. Elasticsearch): fed after each durable commit."""

    def index_entries(self, entries: Sequence[StoredEntry]) -> None: ...


@dataclass
class _State:
    size: int = 0
    frontier: merkle.CompactRange = field(default_factory=merkle.CompactRange)
    last_cp_size: int = 0
    last_cp_time: float = 0.0


class Ledger:
    def __init__(
        self,
        path: str | Path | None = None,
        signing_key: Ed25519PrivateKey | Ed25519Signer | None = None,
        origin: str = "",
        *,
        store: LedgerStore | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        checkpoint_in_append: bool = True,
        trusted_keys: Iterable[str | Ed25519PublicKey] = (),
        mirrors: Sequence[Mirror] = (),
        on_mirror_error: Callable[[Exception], None] | None = None,
        publish: Callable[[int, str], None] | None = None,
        integrator: bool = False,
        integrate_timeout: float = 10.0,
    ) -> None:
        """A ledger on ``path`` (a SQLite file) or on ``store`` (any driver; the ledger owns it
        from now on and closes it on ``close``).

        ``integrator``: on a store that integrates in the background, be one of the candidates that
        extend the tree (a thread; one process at a time does it). ``integrate_timeout``: how long
        ``integrate_pending`` waits for another process's integrator before giving up."""
        if (path is None) == (store is None):
            raise TypeError("Ledger takes a path or store=, exactly one of them")
        if signing_key is None:
            raise TypeError("Ledger needs a checkpoint signing key")
        self.origin = origin
        self.signer = NoteSigner(signing_key, _note_name(origin))
        self.verifiers = [self.signer.verifier()]
        for k in trusted_keys:  # earlier checkpoint keys (rotation): vkey strings or Ed25519 public keys
            if isinstance(k, str):
                self.verifiers.append(NoteVerifier.from_vkey(k))
            else:
                self.verifiers.append(NoteVerifier(self.signer.name, k.public_bytes(Encoding.Raw, PublicFormat.Raw)))
        self.store: LedgerStore = store if store is not None else SqliteLedgerStore(path or "")  # (one is given)
        self.path: Path | None = Path(path) if path is not None else getattr(store, "path", None)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        # A local key signs inside the append transaction (exactly every N events). A remote signer
        # (Vault transit) must not: a slow or unreachable key server would stall every durable
        # append, so checkpoints are then made by checkpoint()/maybe_checkpoint() outside the lock.
        self.checkpoint_in_append = checkpoint_in_append
        self.checkpoint_error: str | None = None  # the last signing failure, for /readyz and logs
        self.mirrors = list(mirrors)
        self._on_mirror_error = on_mirror_error
        # Each new signed checkpoint, after its commit (a NotePublisher copies it elsewhere). A
        # failure is logged and kept in publish_error; it never fails the append that made it.
        self.publish = publish
        self.publish_error: str | None = None
        self._mirror_queue: queue.Queue[list[StoredEntry] | None] | None = None
        self._mirror_thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._closed = False
        self.damaged: str | None = None  # why the stored tree cannot be extended (appends refuse)
        self._background: BackgroundIntegration | None = (
            self.store if isinstance(self.store, BackgroundIntegration) and self.store.integrates_in_background
            else None)
        self.integrates_in_background = self._background is not None
        self.integrate_timeout = integrate_timeout
        try:
            self.store.open(origin, self.signer.verifier_key)
            self._state = self._load_state(self.store, self.store.size())
            if integrator and self._background is not None:
                self._background.start_integrator(self._integrate, self._integrated, bodies=bool(mirrors))
        except BaseException as exc:
            self.store.close()
            if isinstance(exc, self.store.read_errors):
                raise LedgerUnavailable(f"cannot open ledger {self.store.location}: {exc}") from None
            raise
        if self.mirrors:
            self._mirror_queue = queue.Queue()
            self._mirror_thread = threading.Thread(target=self._mirror_loop, name="ztcp-ledger-mirror", daemon=True)
            self._mirror_thread.start()

    def close(self) -> None:
        if self._background is not None:
            # Before taking our lock: the integrator thread takes it to adopt what it committed.
            self._background.stop_integrator()
        if self._mirror_thread is not None and self._mirror_queue is not None:
            self._mirror_queue.put(None)
            self._mirror_thread.join(timeout=30)
            self._mirror_thread = None
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_state(self, src: WriteView | LedgerStore, size: int) -> _State:
        """The tree's frontier at ``size`` and the latest checkpoint, read from the store."""
        nodes = merkle.range_nodes(0, size)
        try:
            hashes = self._node_hashes(src, nodes) if nodes else {}
            frontier = merkle.CompactRange(size, [hashes[n] for n in nodes])
            self.damaged = None
        except UnknownEntry as exc:
            # Still open it, so `verify` can say what happened; appends and checkpoints refuse.
            frontier = merkle.CompactRange()
            self.damaged = str(exc)
        st = _State(size=size, frontier=frontier)
        cp = src.latest_checkpoint()
        if cp:
            st.last_cp_size, st.last_cp_time = cp.size, cp.time_us / 1e6
        else:
            st.last_cp_time = time.time()
        return st

    def _refuse_if_damaged(self) -> None:
        if self.damaged:
            raise LedgerUnavailable(f"ledger is damaged ({self.damaged}); run `ztcp audit verify`")

    # -- writing -----------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._state.size

    def prepare(self, events: Sequence[ProvenanceEvent]) -> list[Prepared]:
        """Canonical bytes and leaf hashes, computed outside the write lock (callers' threads)."""
        sha = hashlib.sha256
        make = tuple.__new__  # NamedTuple's own __new__ is a Python function: too slow at 100k/s
        ckey = citizen_key
        out = []
        for ev in events:
            body = canonical_bytes(ev)
            ref = ev.citizen_ref
            t = ev.time
            out.append(
                make(
                    Prepared,
                    (
                        ev.event_id,
                        ckey(ref) if ref else None,
                        (t - _EPOCH) // _US,
                        ev.type,
                        body,
                        sha(b"\x00" + body).digest(),
                    ),
                )
            )
        return out

    def append(self, events: Sequence[ProvenanceEvent]) -> list[Receipt]:
        """Durably append a batch in one fsync'd transaction; idempotent by ``event_id``."""
        return self.append_prepared(self.prepare(events)) if events else []

    def append_prepared(self, items: Sequence[Prepared]) -> list[Receipt]:
        if not items:
            return []
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("ledger is closed")
            self._refuse_if_damaged()
            done = self.store.append(items, self._integrate)  # LedgerUnavailable if it cannot commit
            if done.integration is not None:  # None: all duplicates, or the integrator's job (background)
                self._adopt(done)
            return done.receipts

    def _adopt(self, done: Appended) -> None:
        """After the commit that extended the tree: adopt its state, publish its checkpoint, feed
        the mirrors (the caller holds the lock)."""
        integration = done.integration
        assert integration is not None
        if integration.state.size >= self._state.size:  # adopted only now that the batch is durable
            self._state = integration.state
        if integration.checkpoint is not None:
            self._publish(integration.checkpoint)
        if self._mirror_queue is not None:
            first = done.first_seq
            self._mirror_queue.put(
                [StoredEntry(first + i, p.event_id, p.leaf_hash, p.body) for i, p in enumerate(done.written)]
            )

    def _integrated(self, done: Appended) -> None:
        """The store's integrator committed a batch (background integration, another thread)."""
        with self._lock:
            if not self._closed:
                self._adopt(done)

    def integrate_pending(self, timeout: float | None = None) -> bool:
        """Wait until every event acknowledged so far is in the tree (provable, and covered by the
        next checkpoint). Immediate unless the store integrates in the background; then this
        process integrates them if no integrator is running, else waits for it, up to ``timeout``
        (False if it passed: the entries stay acknowledged and are integrated later)."""
        if self._background is None or self._closed:
            return True
        done = self._background.integrate_pending(
            self._integrate, self._integrated, timeout=self.integrate_timeout if timeout is None else timeout,
            bodies=bool(self.mirrors))
        if not done:
            log.warning("ledger %s: events acknowledged but not yet in the tree after %.0f s (integrator busy "
                        "or failing)", self.store.location, self.integrate_timeout if timeout is None else timeout)
        return done

    def refresh(self) -> None:
        """Pick up appends made through another connection (cheap when nothing changed)."""
        with self._lock:
            size = self.store.size()
            if size != self._state.size:
                self._state = self._load_state(self.store, size)

    def _integrate(self, view: WriteView, new: Sequence[Prepared]) -> Integration:
        """The tree's part of an append, run by the store inside its write transaction.

        ``view.size`` is the size under the store's lock. If another process appended since we last
        looked, our cached frontier is stale: rebuild it from the stored nodes first, or seqs and
        nodes would collide. Returns the nodes the new leaves close (and a checkpoint when one is
        due); the new state rides along and is adopted after the commit. Pure apart from that: the
        store may call it again if it retries the transaction.
        """
        st = self._state
        if view.size != st.size:
            st = self._load_state(view, view.size)
            self._refuse_if_damaged()
        seq = st.size
        node_ids: list[int] = []
        node_hashes: list[bytes] = []
        upper_ids: list[int] = []
        upper_hashes: list[bytes] = []
        sha = hashlib.sha256
        # The compact range, inlined (this loop runs 100k times a second): the nodes a new leaf
        # closes all end at that leaf, so their storage id is simply (seq << 6) | level.
        stack = list(st.frontier._stack)
        for p in new:
            h = lh = p.leaf_hash
            base = seq << 6
            node_ids.append(base)
            node_hashes.append(lh)
            level = 0
            while stack and stack[-1][0] == level:
                h = sha(b"\x01" + stack.pop()[1] + h).digest()
                level += 1
                if level < LOWER_LEVELS:
                    node_ids.append(base | level)
                    node_hashes.append(h)
                else:
                    upper_ids.append(base | level)
                    upper_hashes.append(h)
            stack.append((level, h))
            seq += 1
        frontier = merkle.CompactRange(seq, [x[1] for x in stack])
        state = _State(seq, frontier, st.last_cp_size, st.last_cp_time)
        now = time.time()
        cp_row = None
        if self.checkpoint_in_append and (
            seq - st.last_cp_size >= self.checkpoint_every or (now - st.last_cp_time) >= self.checkpoint_interval
        ):
            # On failure the events are still durable; the next checkpoint covers them (error kept).
            with contextlib.suppress(CheckpointUnavailable):
                cp_row = self._checkpoint_row(seq, frontier.root(), now)
                state.last_cp_size, state.last_cp_time = seq, now
        return Integration((node_ids, node_hashes), (upper_ids, upper_hashes), cp_row, state)

    def _mirror_loop(self) -> None:
        """Feed mirrors off the append path: a slow or down Elasticsearch never delays a commit.

        After a failure a mirror that can ``sync`` (EsMirror) resumes from its own highest seq, so
        batches dropped during the outage are indexed once it is back.
        """
        assert self._mirror_queue is not None
        behind: set[int] = set()
        while True:
            entries = self._mirror_queue.get()
            if entries is None:
                self._mirror_queue.task_done()
                return
            self._feed(entries, behind)
            self._mirror_queue.task_done()

    def _feed(self, entries: list[StoredEntry], behind: set[int]) -> None:
        for i, m in enumerate(self.mirrors):
            try:
                if i in behind and hasattr(m, "sync"):
                    m.sync(self)
                    behind.discard(i)
                else:
                    m.index_entries(entries)
            except Exception as exc:  # noqa: BLE001 - the ledger's store is the record of truth
                behind.add(i)
                if self._on_mirror_error:
                    self._on_mirror_error(exc)

    def flush_mirrors(self, timeout: float = 30.0) -> None:
        """Wait until every committed batch has been handed to the mirrors (tests, shutdown)."""
        if self._mirror_queue is not None:
            deadline = time.monotonic() + timeout
            while self._mirror_queue.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.01)

    def _checkpoint_row(self, size: int, root: bytes, now: float) -> CheckpointRow:
        try:
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        except CheckpointError:
            raise
        except Exception as exc:  # the signer is pluggable (a key server): any failure means "not now"
            self.checkpoint_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("checkpoint at size %d not signed: %s", size, self.checkpoint_error)
            raise CheckpointUnavailable(f"cannot sign a checkpoint: {self.checkpoint_error}") from None
        self.checkpoint_error = None
        return CheckpointRow(size, root, int(now * 1_000_000), note)

    def checkpoint(self) -> SignedCheckpoint:
        """Sign the current tree now (returns the existing checkpoint if the size has not moved).

        The signature is made outside the ledger lock, so appends go on while a remote key signs;
        a checkpoint of a size that has meanwhile grown is still a valid (older) checkpoint.
        Raises :class:`CheckpointUnavailable` when the key cannot sign, ``LedgerUnavailable`` when
        the stored tree cannot be read or is damaged (nothing is signed over a tree we cannot trust).
        On a store that integrates in the background, events acknowledged before the call are
        integrated first (``integrate_pending``), so the checkpoint covers them.
        """
        self.integrate_pending()
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("ledger is closed")
            try:
                self.refresh()  # the store's size, not ours: another process may have appended
            except self.store.read_errors as exc:
                raise LedgerUnavailable(f"cannot read the tree to checkpoint: {exc}") from None
            self._refuse_if_damaged()
            st = self._state
            size, root = st.size, st.frontier.root()
            fresh = st.last_cp_size == size
        if size == 0:
            raise UnknownEntry("the ledger is empty: nothing to checkpoint")
        if not fresh:
            now = time.time()
            row = self._checkpoint_row(size, root, now)
            with self._lock:
                self.store.add_checkpoint(row)  # LedgerUnavailable if it cannot be stored
                st = self._state
                if size > st.last_cp_size:
                    st.last_cp_size, st.last_cp_time = size, now
            self._publish(row)
        cp = self.latest_checkpoint()
        assert cp is not None
        return cp

    def _publish(self, row: CheckpointRow) -> None:
        if self.publish is None:
            return
        try:
            self.publish(row[0], row[3])
            self.publish_error = None
        except Exception as exc:  # noqa: BLE001 - the checkpoint stands; publishing is retried next time
            self.publish_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.error("checkpoint at size %d not published: %s", row[0], self.publish_error)

    def checkpoint_or_latest(self) -> SignedCheckpoint | None:
        """A fresh checkpoint if the key can sign now, else the latest stored one (readers degrade:
        events after it show as not yet signed instead of the whole trace failing)."""
        try:
            return self.checkpoint()
        except CheckpointUnavailable:
            return self.latest_checkpoint()

    def maybe_checkpoint(self) -> SignedCheckpoint | None:
        """Checkpoint if events are waiting and N events or the interval have passed (a timer calls this)."""
        st = self._state
        waiting = st.size - st.last_cp_size
        due = waiting >= self.checkpoint_every or time.time() - st.last_cp_time >= self.checkpoint_interval
        if waiting > 0 and due:
            return self.checkpoint()
        return None

    # -- reading -----------------------------------------------------------------------------------

    @staticmethod
    def _node_hashes(src: WriteView | LedgerStore, nodes: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        want = {node_id(lv, ix): (lv, ix) for lv, ix in nodes}
        found = src.node_hashes(want)
        if len(found) != len(want):
            missing = sorted(want[n] for n in want.keys() - found.keys())
            lv, ix = missing[0]
            raise UnknownEntry(f"tree node for seq {ix << lv} (level {lv}) is missing from the ledger")
        return {want[n]: h for n, h in found.items()}

    def _materialise(self, plans: list[list[list[tuple[int, int]]]]) -> list[list[bytes]]:
        if self._closed:
            raise LedgerUnavailable("ledger is closed")
        needed = {n for plan in plans for rng in plan for n in rng}
        hashes = self._node_hashes(self.store, needed) if needed else {}
        return [[merkle.fold_range([hashes[n] for n in rng]) for rng in plan] for plan in plans]

    def _check_size(self, size: int | None) -> int:
        cur = self._state.size
        if size is not None and size > cur:
            self.refresh()  # e.g. a checkpoint signed by another process over events we have not seen
            cur = self._state.size
        if size is None:
            return cur
        if not 0 <= size <= cur:
            raise UnknownEntry(f"tree size {size} is beyond the ledger's size {cur}")
        return size

    def root(self, size: int | None = None) -> bytes:
        size = self._check_size(size)
        if size == 0:
            return merkle.EMPTY_ROOT
        return self._materialise([[merkle.range_nodes(0, size)]])[0][0]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.inclusion_proofs([index], size)[0]

    def inclusion_proofs(self, indices: Sequence[int], size: int | None = None) -> list[list[bytes]]:
        """Proofs for several leaves against one tree size, with one batched node read."""
        size = self._check_size(size)
        plans = []
        for index in indices:
            if not 0 <= index < size:
                raise UnknownEntry(f"seq {index} is not in a tree of size {size}")
            plans.append(merkle.inclusion_plan(index, size))
        return self._materialise(plans)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise UnknownEntry(f"size {size1} is not within 0..{size2}")
        return self._materialise([merkle.consistency_plan(size1, size2)])[0]

    def get(self, seq: int) -> StoredEntry:
        entry = self.store.get(seq)
        if entry is None:
            raise UnknownEntry(f"no event with seq {seq}")
        return entry

    def get_by_event_ids(self, event_ids: Sequence[str]) -> dict[str, StoredEntry]:
        return self.store.by_event_ids(event_ids)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[StoredEntry]:
        return self.store.entries(start, self.size if end is None else end)

    def events_after(self, cursor: str | int | None, limit: int = 50_000) -> tuple[list[dict[str, Any]], str | None]:
        """Events with seq > cursor as dicts (plus ``seq``, ``leaf_hash``), and the new cursor.

        Shaped for ``siem_rules.CallableSource(name, "provenance", ledger.events_after)``: incremental
        detection reads only what was appended since its last run, whatever the ledger's size.
        """
        after = -1 if cursor in (None, "") else int(cursor)
        rows = list(self.store.scan(after + 1, limit))
        out = [entry_document(seq, lh, body) for seq, lh, body in rows]
        return out, (str(rows[-1][0]) if rows else (None if cursor is None else str(cursor)))

    def citizen_entries(
        self,
        citizen_ref: str,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
        after_seq: int = -1,
    ) -> list[StoredEntry]:
        lo = _us(since) if since else -(2**62)
        hi = _us(until) if until else 2**62
        needle = b'"citizen_ref":"' + citizen_ref.encode() + b'"'
        out = []
        for entry in self.store.citizen_entries(citizen_key(citizen_ref), lo, hi, after_seq):
            if needle in entry.body:  # the 64-bit key could collide; the body is authoritative
                out.append(entry)
                if limit is not None and len(out) >= limit:
                    break
        return out

    # -- checkpoints -------------------------------------------------------------------------------

    def _open(self, row: CheckpointRow) -> SignedCheckpoint:
        return SignedCheckpoint(open_checkpoint(row.note, self.verifiers, self.origin), row.note, _from_us(row.time_us))

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The newest checkpoint, signature verified (raises ``CheckpointError`` if forged)."""
        row = self.store.latest_checkpoint()
        return self._open(row) if row else None

    def checkpoint_at(self, size: int) -> SignedCheckpoint:
        row = self.store.checkpoint_at(size)
        if row is None:
            raise UnknownEntry(f"no checkpoint at size {size}")
        return self._open(row)

    def raw_checkpoints(self) -> Iterator[CheckpointRow]:
        """(size, root, time_us, note) rows in size order, unverified: for ``verify``."""
        return self.store.checkpoints()


def _note_name(origin: str) -> str:
    """A note key name from the origin (names may not contain spaces or '+')."""
    name = "".join("-" if c.isspace() or c == "+" else c for c in origin)
    if not name:
        raise CheckpointError("ledger origin must not be empty")
    return name
