"""Malformed variants of decision inputs, for engine conformance.

Engines agree easily on well-formed inputs; they part ways on the odd ones — a missing key, a
string where a list belongs, ``"Employee"`` for ``"employee"``, a time with a lower-case ``t`` —
which is exactly what a buggy or hostile caller sends. :func:`mutations` derives such variants
from known inputs, deterministically from a seed, so a disagreement found once is found again
(and can be added to the pack's ``conformance/*.json``).

Used by the conformance tests (OPA vs both regorus modes) and by the PDP's start-up gate, which
runs the RVM only if it decides like the interpreter on these too.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Sequence
from typing import Any

Path = tuple[str | int, ...]

# Values of the wrong type or shape: each has tripped some engine on some construct.
ODD_VALUES: tuple[Any, ...] = (None, "", 0, -1, 1.5, True, False, [], {}, "x", [None], {"x": 1}, "null")
OPERATIONS = ("drop", "odd", "case", "empty", "wrap", "stringify")


def _paths(node: Any, prefix: Path = ()) -> Iterator[Path]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _parent(doc: Any, path: Path) -> Any:
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node


def _empty_like(value: Any) -> Any:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return 0
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return "" if isinstance(value, str) else None


def _recase(value: str, rng: random.Random) -> str:
    return rng.choice((str.upper, str.lower, str.title, str.swapcase))(value)


def mutate(doc: dict[str, Any], rng: random.Random, changes: int = 1) -> dict[str, Any]:
    """A copy of ``doc`` with ``changes`` random edits (a later edit may land inside an earlier one)."""
    out = copy.deepcopy(doc)
    for _ in range(changes):
        paths = list(_paths(out))
        if not paths:
            return {rng.choice(("subject", "action", "resource")): rng.choice(ODD_VALUES)}
        operation = rng.choice(OPERATIONS)
        if operation == "case":
            strings = [p for p in paths if isinstance(_parent(out, p)[p[-1]], str)]
            paths = strings or paths
        path = rng.choice(paths)
        parent, key = _parent(out, path), path[-1]
        value = parent[key]
        if operation == "drop":
            del parent[key]
        elif operation == "odd":
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif operation == "case" and isinstance(value, str):
            parent[key] = _recase(value, rng)
        elif operation == "empty":
            parent[key] = _empty_like(value)
        elif operation == "wrap":
            # A list where one value belongs, or its first element where a list belongs.
            parent[key] = (value[0] if value else None) if isinstance(value, list) else [value]
        else:  # stringify, or "case" on a non-string: the value's text ("120", "True", "None")
            parent[key] = str(value)
    return out


def mutations(inputs: Sequence[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` mutated copies of ``inputs`` (round robin), 1–3 edits each, reproducible by ``seed``."""
    if not inputs:
        return []
    rng = random.Random(seed)
    return [mutate(inputs[i % len(inputs)], rng, rng.choice((1, 1, 2, 3))) for i in range(count)]
