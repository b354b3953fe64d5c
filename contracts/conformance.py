"""Does a JSON-shaped value satisfy a ``typing.TypedDict`` contract? (tests and diagnostics)

The hot-path contracts (:mod:`contracts.signals`, :mod:`contracts.policy_input`,
:mod:`contracts.decision_log`) are TypedDicts so producing them costs nothing; this checks a
produced value against one, exactly: missing required keys, keys the contract does not declare, and
values of the wrong type are all problems. Not for hot paths (it walks the whole value).

Supported annotations: TypedDicts (``NotRequired`` keys), ``X | None`` and unions, ``list[T]``,
``dict[K, V]``, ``Literal``, ``Any``, ``str``, ``int`` (not ``bool``), ``float`` (``int`` accepted,
as in typing), ``bool``, ``None``.
"""

from __future__ import annotations

import types
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin, get_type_hints, is_typeddict


def problems(value: Any, contract: Any, where: str = "$") -> list[str]:
    """Every way ``value`` departs from ``contract``, as ``path: what`` (empty: it conforms)."""
    out: list[str] = []
    _check(value, contract, where, out)
    return out


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__  # the type only, never the value


def _check(value: Any, tp: Any, where: str, out: list[str]) -> None:
    origin = get_origin(tp)
    if tp is Any:
        return
    if origin in (NotRequired, Required):
        _check(value, get_args(tp)[0], where, out)
    elif tp is None or tp is type(None):
        if value is not None:
            out.append(f"{where}: expected null, got {_describe(value)}")
    elif origin in (Union, types.UnionType):
        attempts: list[list[str]] = []
        for option in get_args(tp):
            found: list[str] = []
            _check(value, option, where, found)
            if not found:
                return
            attempts.append(found)
        # Report the option that came closest (fewest problems): that is usually the intended one.
        closest = min(attempts, key=len)
        out.extend(closest)
    elif is_typeddict(tp):
        _check_typeddict(value, tp, where, out)
    elif origin is list:
        if not isinstance(value, list):
            out.append(f"{where}: expected a list, got {_describe(value)}")
            return
        (item,) = get_args(tp) or (Any,)
        for i, v in enumerate(value):
            _check(v, item, f"{where}[{i}]", out)
    elif origin is dict or tp is dict:
        if not isinstance(value, dict):
            out.append(f"{where}: expected an object, got {_describe(value)}")
            return
        key_tp, val_tp = get_args(tp) or (Any, Any)
        for k, v in value.items():
            _check(k, key_tp, f"{where}.<key>", out)
            _check(v, val_tp, f"{where}.{k}", out)
    elif origin is Literal:
        if value not in get_args(tp):
            out.append(f"{where}: not one of {list(get_args(tp))}")
    elif tp is bool:
        if not isinstance(value, bool):
            out.append(f"{where}: expected bool, got {_describe(value)}")
    elif tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{where}: expected int, got {_describe(value)}")
    elif tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            out.append(f"{where}: expected float, got {_describe(value)}")
    elif tp is str:
        if not isinstance(value, str):
            out.append(f"{where}: expected str, got {_describe(value)}")
    else:
        raise TypeError(f"{where}: annotation {tp!r} is not supported by contracts.conformance")


def _check_typeddict(value: Any, tp: Any, where: str, out: list[str]) -> None:
    if not isinstance(value, dict):
        out.append(f"{where}: expected an object ({tp.__name__}), got {_describe(value)}")
        return
    hints = get_type_hints(tp, include_extras=True)
    for key in sorted(tp.__required_keys__ - value.keys()):
        out.append(f"{where}.{key}: missing")
    for key in sorted(value.keys() - hints.keys()):
        out.append(f"{where}.{key}: not in the contract ({tp.__name__})")
    for key, v in value.items():
        if key in hints:
            _check(v, hints[key], f"{where}.{key}", out)


def field_type(contract: Any, path: str) -> Any:
    """The annotation at a dotted ``path`` inside a TypedDict (through lists and optional parts),
    or raise ``KeyError`` naming the first part the contract does not have."""
    tp = contract
    for part in path.split("."):
        tp = _unwrap(tp)
        options = [o for o in (get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,))
                   if is_typeddict(_unwrap(o))]
        found = [get_type_hints(_unwrap(o), include_extras=True)[part] for o in options
                 if part in get_type_hints(_unwrap(o))]
        if not found:
            raise KeyError(f"{path}: {part!r} is not in the contract")
        tp = found[0]
    return tp


def _unwrap(tp: Any) -> Any:
    """Strip NotRequired/Required, ``| None`` and ``list[...]`` down to what a path walks into."""
    while True:
        origin = get_origin(tp)
        if origin in (NotRequired, Required, list):
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(tp) if a is not type(None)]
            if len(options) != 1:
                return tp
            tp = options[0]
        else:
            return tp
