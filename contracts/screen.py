"""The one screen for raw personal identifiers in strings that reach a log or a store.

Refused (the error names the field, never the value):

* Taiwanese national ID / resident certificate shapes, with or without a valid check digit:
  a letter followed by ``1 2 8 9 0`` or (old resident numbers) ``A–D``, then 8 digits;
* Taiwanese mobile numbers (``09xx-xxx-xxx`` with or without separators).

A canonical UUID (8-4-4-4-12 hex) is exempt: event and decision ids are UUIDv7, whose random hex
would otherwise match the ID shape now and then, and the format leaves no room for a readable value.

Every check runs on the NFKC form (full-width ``Ａ１２３…`` is ``A123…``) and again with spaces and
dashes removed (``A123-456-789``), the ways a person writes an ID into a free-text field.

Screening errs towards refusing: a record id that happens to look like an ID must be re-keyed by
the caller, which is cheaper than a national ID in an append-only, replicated log.
"""

from __future__ import annotations

import re
import unicodedata

_RAW_ID = re.compile(r"(?<![0-9])[A-Za-z][12890A-Da-d][0-9]{8}(?![0-9])")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MOBILE = re.compile(r"(?<![0-9])09[0-9]{2}[- ]?[0-9]{3}[- ]?[0-9]{3}(?![0-9])")



_SEPARATORS = re.compile(r"[\s\-]+")


def _forms(value: str) -> tuple[str, ...]:
    # Cheap on the hot path: ids and codes are ASCII (NFKC is the identity) and rarely hold separators.
    folded = value if value.isascii() else unicodedata.normalize("NFKC", value)
    if " " in folded or "-" in folded or not folded.isascii():
        return folded, _SEPARATORS.sub("", folded)
    return (folded,)


def screen_text(value: str) -> str:
    """Refuse strings that carry a raw national ID or phone number (message never has the value)."""
    if _UUID.fullmatch(value):
        return value  # random hex: would otherwise trip the screen about once per few thousand ids
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains invalid Unicode (a lone surrogate)") from None
    for form in _forms(value):
        if _RAW_ID.search(form):
            raise ValueError("contains something shaped like a national ID; use citizen_ref instead")
        if _MOBILE.search(form):
            raise ValueError("contains something shaped like a phone number; raw personal values are not allowed")
    return value


def contains_national_id(value: str) -> bool:
    """Whether ``value`` holds something shaped like a national ID (UUIDs exempt, as in :func:`screen_text`)."""
    return not _UUID.fullmatch(value) and any(_RAW_ID.search(form) for form in _forms(value))
