"""RFC 6962 / 9162 hashing and proofs: the shared transparency-dev vectors, then properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import merkle
from provenance.merkle import ProofError

# transparency-dev/merkle's RFC 6962 / 9162 vectors, vendored (Apache-2.0; commit in SOURCE) so they
# run on every checkout; ../shared/testdata/merkle is where they came from.
VECTORS = Path(__file__).parent / "vectors" / "merkle"


def _b64(v: str | None) -> bytes:
    return base64.b64decode(v) if v else b""


def _cases(kind: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted((VECTORS / kind).rglob("*.json")):
        out.append((str(path.relative_to(VECTORS)), json.loads(path.read_text())))
    return out


INCLUSION = _cases("inclusion")
CONSISTENCY = _cases("consistency")


def test_vectors_are_all_there() -> None:
    assert len(INCLUSION) >= 90 and len(CONSISTENCY) >= 90
    assert any(c["wantErr"] for _, c in INCLUSION) and any(not c["wantErr"] for _, c in INCLUSION)


@pytest.mark.parametrize(("name", "case"), INCLUSION, ids=[n for n, _ in INCLUSION])
def test_inclusion_vector(name: str, case: dict) -> None:
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize(("name", "case"), CONSISTENCY, ids=[n for n, _ in CONSISTENCY])
def test_consistency_vector(name: str, case: dict) -> None:
    args = (
        case["size1"],
        case["size2"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root1"]),
        _b64(case["root2"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_hashing_rules() -> None:
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.root_from_leaf_hashes([]) == hashlib.sha256(b"").digest()
    a, b, c = (merkle.leaf_hash(bytes([i])) for i in range(3))
    assert merkle.root_from_leaf_hashes([a, b, c]) == merkle.node_hash(merkle.node_hash(a, b), c)
    # RFC 6962 known root for the 8 test leaves of the reference implementation (transparency-dev).
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    root = merkle.root_from_leaf_hashes(merkle.leaf_hash(x) for x in leaves)
    assert root.hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def _mth(hs: list[bytes]) -> bytes:
    """Direct recursive MTH from RFC 6962 §2.1 (the reference the planners are checked against)."""
    if len(hs) == 1:
        return hs[0]
    k = 1 << ((len(hs) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(hs[:k]), _mth(hs[k:]))


def _tree_nodes(hs: list[bytes]) -> dict[tuple[int, int], bytes]:
    nodes: dict[tuple[int, int], bytes] = {}
    cr = merkle.CompactRange()
    for h in hs:
        for level, index, nh in cr.append(h):
            nodes[(level, index)] = nh
    return nodes


def _materialise(plan: list[list[tuple[int, int]]], nodes: dict) -> list[bytes]:
    return [merkle.fold_range([nodes[n] for n in rng]) for rng in plan]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_generated_proofs_verify_and_tamper_fails(size: int, data: st.DataObject) -> None:
    hs = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    nodes = _tree_nodes(hs)
    root = _mth(hs)
    assert merkle.root_from_leaf_hashes(hs) == root
    index = data.draw(st.integers(0, size - 1))
    proof = _materialise(merkle.inclusion_plan(index, size), nodes)
    merkle.verify_inclusion(hs[index], index, size, proof, root)
    if proof:
        bad = list(proof)
        j = data.draw(st.integers(0, len(bad) - 1))
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hs[index], index, size, bad, root)
    size1 = data.draw(st.integers(0, size))
    cproof = _materialise(merkle.consistency_plan(size1, size), nodes)
    root1 = _mth(hs[:size1]) if size1 else merkle.EMPTY_ROOT
    if size1 == 0:
        assert cproof == []
        with pytest.raises(merkle.ProofRangeError):
            merkle.verify_consistency(size1, size, cproof, root1, root)
        return
    merkle.verify_consistency(size1, size, cproof, root1, root)
    if 0 < size1 < size:
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size, cproof, root, root1)


def test_verifiers_reject_bad_shapes() -> None:
    h = merkle.leaf_hash(b"x")
    with pytest.raises(merkle.ProofRangeError):
        merkle.verify_inclusion(h, 1, 1, [], h)
    with pytest.raises(merkle.ProofSizeError):
        merkle.verify_inclusion(h[:31], 0, 1, [], h)
    with pytest.raises(merkle.ProofRangeError):
        merkle.verify_consistency(3, 2, [h], h, h)
