"""Masking obligations from a decision (``{"type": "mask", "field": "...", "style": "last4"}``).

Styles: ``last4`` (keep the last four characters), ``first1`` (keep the first), ``email`` (keep the
domain), ``year`` (keep the first four characters of an ISO date), ``full`` (mask everything).
An unknown style masks everything: an obligation we do not understand must not leak more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "*"
STYLES = ("last4", "first1", "email", "year", "full")


def mask_value(value: str, style: str) -> str:
    n = len(value)
    if style == "last4":
        return MASK * max(0, n - 4) + value[-4:] if n > 4 else MASK * n
    if style == "first1":
        return value[:1] + MASK * (n - 1) if n > 1 else MASK * n
    if style == "email":
        local, at, domain = value.rpartition("@")
        return (MASK * len(local) + at + domain) if at else MASK * n
    if style == "year":
        return value[:4] + "".join(MASK if ch.isalnum() else ch for ch in value[4:]) if n > 4 else MASK * n
    return MASK * n  # "full" and anything unknown


def apply_masks(
    values: dict[str, str | None], obligations: Iterable[Mapping[str, Any]]
) -> dict[str, str | None]:
    out = dict(values)
    for ob in obligations:
        if not isinstance(ob, dict) or ob.get("type") != "mask":
            continue
        f = ob.get("field")
        if f in out and (value := out[f]) is not None:
            out[f] = mask_value(value, str(ob.get("style", "full")))
    return out
