"""RFC 6962 / RFC 9162 Merkle tree hashing, proof planning and proof verification.

Leaf hash = SHA-256(0x00 ‖ data); interior node = SHA-256(0x01 ‖ left ‖ right); the empty tree's
root is SHA-256(""). The verifiers follow RFC 9162 §2.1.3.2 / §2.1.4.2 (the same algorithm as
transparency-dev/merkle, whose test vectors they pass) and raise a ``ProofError`` subclass on any
bad proof. Proof *generation* lives on the ledger, which stores every complete subtree hash so a
proof is O(log n) reads: ``inclusion_plan`` / ``consistency_plan`` say which stored nodes to read.

A node is named ``(level, index)``: the complete subtree over leaves
``[index·2^level, (index+1)·2^level)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from provenance.errors import ProofError, ProofRangeError, ProofSizeError, RootMismatch

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "ProofError",
    "ProofRangeError",
    "ProofSizeError",
    "RootMismatch",
    "consistency_plan",
    "fold_range",
    "inclusion_plan",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256

Node = tuple[int, int]  # (level, index)


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The right edge of a tree: one hash per set bit of its size (RFC 9162 'compact range').

    ``append`` returns every complete subtree the new leaf closes, so callers can store them.
    """

    __slots__ = ("size", "_stack")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError("a compact range of size n holds popcount(n) hashes")
        self.size = size
        self._stack: list[tuple[int, bytes]] = []
        levels = [lv for lv in range(size.bit_length() - 1, -1, -1) if size >> lv & 1]
        self._stack = list(zip(levels, hashes, strict=True))

    def append(self, h: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the new nodes ``(level, index, hash)``, leaf first."""
        index = self.size
        created = [(0, index, h)]
        stack = self._stack
        level = 0
        while stack and stack[-1][0] == level:
            h = _sha256(b"\x01" + stack.pop()[1] + h).digest()
            level += 1
            created.append((level, index >> level, h))
        stack.append((level, h))
        self.size = index + 1
        return created

    def hashes(self) -> list[bytes]:
        return [h for _, h in self._stack]

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        it = reversed(self._stack)
        acc = next(it)[1]
        for _, h in it:
            acc = _sha256(b"\x01" + h + acc).digest()
        return acc


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """The RFC 9162 root of the tree with these leaf hashes (``EMPTY_ROOT`` for none)."""
    cr = CompactRange()
    for h in hashes:
        _check_hash(h, "leaf hash")
        cr.append(h)
    return cr.root()


# -- proof planning (which complete subtrees a proof needs) -------------------------------------


def range_nodes(begin: int, end: int) -> list[Node]:
    """The complete subtrees covering ``[begin, end)`` left to right (greedy, largest aligned first)."""
    nodes: list[Node] = []
    while begin < end:
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while (1 << level) > end - begin:
            level -= 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its complete subtrees (left to right): a right fold."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_plan(index: int, size: int) -> list[list[Node]]:
    """RFC 6962 PATH(index, D[0:size]): one entry per proof hash, each the nodes to fold."""
    if not 0 <= index < size:
        raise ProofRangeError(f"index {index} is outside a tree of size {size}")
    out: list[list[Node]] = []
    begin, n, m = 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:
            out.append(range_nodes(begin + k, begin + n))
            n = k
        else:
            out.append(range_nodes(begin, begin + k))
            begin, m, n = begin + k, m - k, n - k
    out.reverse()  # RFC order: the leaf's sibling first
    return out


def consistency_plan(size1: int, size2: int) -> list[list[Node]]:
    """RFC 6962 PROOF(size1, D[0:size2]) as ranges of nodes to fold."""
    if not 0 <= size1 <= size2:
        raise ProofRangeError(f"cannot prove size {size1} against smaller size {size2}")
    if size1 == 0 or size1 == size2:
        return []
    out: list[list[Node]] = []
    begin, n, m, complete = 0, size2, size1, True
    while m != n:
        k = _split(n)
        if m <= k:
            out.append(range_nodes(begin + k, begin + n))
            n = k
        else:
            out.append(range_nodes(begin, begin + k))
            begin, m, n, complete = begin + k, m - k, n - k, False
    if not complete:
        out.append(range_nodes(begin, begin + n))
    out.reverse()
    return out


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------------


def _check_hash(h: object, what: str) -> None:
    if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
        raise ProofSizeError(f"{what} must be {HASH_SIZE} bytes")


def _match(got: bytes, want: bytes, what: str) -> None:
    if got != want:
        raise RootMismatch(f"proof computes a different {what}")


def _decomp(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofRangeError(f"index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    proof = list(proof or [])
    for h in proof:
        _check_hash(h, "proof hash")
    inner, border = _decomp(index, size)
    if len(proof) != inner + border:
        raise ProofSizeError(f"inclusion proof has {len(proof)} hashes, expected {inner + border}")
    res = _chain_inner(bytes(leaf), proof[:inner], index)
    return _chain_border_right(res, proof[inner:])


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``leaf_hash`` at ``index`` in the tree ``root``."""
    _check_hash(root, "root")
    _match(root_from_inclusion_proof(leaf_hash, index, size, proof), bytes(root), "root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ``ProofError`` unless the tree ``root2`` (size2) extends the tree ``root1`` (size1)."""
    proof = list(proof or [])
    if size1 < 0 or size2 < size1:
        raise ProofRangeError(f"size2 ({size2}) < size1 ({size1})")
    for h in proof:
        _check_hash(h, "proof hash")
    if size1 == 0:
        # Every tree extends the empty one, so such a "proof" proves nothing: refuse it rather than
        # let a caller believe something was checked (as the shared vectors require).
        raise ProofRangeError("consistency from an empty tree (size1 = 0) is not a proof")
    if size1 == size2:
        if proof:
            raise ProofSizeError("size1 == size2 but the proof is not empty")
        _match(bytes(root1), bytes(root2), "root")
        return
    if not proof:
        raise ProofSizeError("empty consistency proof")
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    inner, border = _decomp(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    if size1 == 1 << shift:
        seed, start = bytes(root1), 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofSizeError(f"consistency proof has {len(proof)} hashes, expected {start + inner + border}")
    proof = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, proof[:inner], mask), proof[inner:])
    _match(hash1, bytes(root1), "first root")
    hash2 = _chain_border_right(_chain_inner(seed, proof[:inner], mask), proof[inner:])
    _match(hash2, bytes(root2), "second root")
