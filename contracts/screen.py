"""The one screen for raw personal identifiers in strings that reach a log or a store.

Refused (the error names the field, never the value):

* Taiwanese national ID / resident certificate shapes, with or without a valid check digit:
  a letter followed by ``1 2 8 9 0`` or (old resident numbers) ``A–D``, then 8 digits;
* Taiwanese mobile numbers (``09xx-xxx-xxx`` with or without separators).

A canonical UUID (8-4-4-4-12 hex) is exempt: event and decision ids are UUIDv7, whose random hex
would otherwise match the ID shape now and then, and the format leaves no room for a readable value.

Every check runs on the NFKC form (full-width ``Ａ１２３…`` is ``A123…``), and an ID written with
spaces or dashes (``A123-456-789``) counts too: the ways a person writes one into a text field.

Screening errs towards refusing: a record id that happens to look like an ID must be re-keyed by
the caller, which is cheaper than a national ID in an append-only, replicated log.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_RAW_ID = re.compile(r"(?<![0-9])[A-Za-z][12890A-Da-d][0-9]{8}(?![0-9])")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MOBILE = re.compile(r"(?<![0-9])09[0-9]{2}[- ]?[0-9]{3}[- ]?[0-9]{3}(?![0-9])")



# An ID written with spaces or dashes ("A123-456-789", "A 123 456 789"). The letter must start a
# token: "dec-000000036" is a sequence number, not an ID with a dash in it.
_SEPARATED = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][\s\-]*[12890A-Da-d](?:[\s\-]*[0-9]){8}(?![\s\-]*[0-9])")


def _folded(value: str) -> str:
    # Cheap on the hot path: ids and codes are ASCII, for which NFKC is the identity.
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def _has_id(text: str) -> bool:
    return _RAW_ID.search(text) is not None or (
        (" " in text or "-" in text or not text.isascii()) and _SEPARATED.search(text) is not None)


def screen_text(value: str) -> str:
    """Refuse strings that carry a raw national ID or phone number (message never has the value)."""
    _screened(value)
    return value


# Every id and code of a decision request passes here (eight per request): the same dataset names,
# channels, purpose codes and device ids recur, and the verdict depends on the string alone, so it is
# remembered. Refusals raise and are not cached; the cache is bounded.
@functools.lru_cache(maxsize=8192)
def _screened(value: str) -> None:
    if _UUID.fullmatch(value):
        return  # random hex: would otherwise trip the screen about once per few thousand ids
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains invalid Unicode (a lone surrogate)") from None
    folded = _folded(value)
    if _has_id(folded):
        raise ValueError("contains something shaped like a national ID; use citizen_ref instead")
    if _MOBILE.search(folded):
        raise ValueError("contains something shaped like a phone number; raw personal values are not allowed")


def contains_national_id(value: str) -> bool:
    """Whether ``value`` holds something shaped like a national ID (UUIDs exempt, as in :func:`screen_text`)."""
    return not _UUID.fullmatch(value) and _has_id(_folded(value))
