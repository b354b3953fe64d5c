"""``citizen_ref``: the only way a citizen is named inside ztcp (docs/design.md, Contracts).

Normalisation of a Taiwanese national ID (身分證統一編號) or resident certificate number: remove all
whitespace, upper-case, then require ``[A-Z][12890]\\d{8}`` (citizens use 1/2; the 2021 resident
certificate numbers use 8/9; 0 is accepted as the spec allows) and a valid check digit. Only the
normalised form is MACed, so ``" a123456789"`` and ``"A123456789"`` give the same reference.
The reference is ``cr_`` + unpadded RFC 4648 base32 of HMAC-SHA256(blind-index key, normalised ID).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata

from contracts.errors import InvalidNationalId

_FORMAT = re.compile(r"[A-Z][12890][0-9]{8}")
CITIZEN_REF_PATTERN = r"^cr_[A-Z2-7]{52}$"

# Letter → two-digit area code of the Taiwanese ID checksum (I, O, W, X, Y, Z are out of order).
_LETTER_CODES = dict(zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36), strict=True))
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 1, 1)


def _weighted(nid: str) -> int:
    code = _LETTER_CODES[nid[0]]
    return code // 10 + (code % 10) * 9 + sum(int(d) * w for d, w in zip(nid[1:], _WEIGHTS, strict=False))


def _checksum_ok(nid: str) -> bool:
    return _weighted(nid) % 10 == 0


def national_id_check_digit(prefix: str) -> str:
    """The check digit completing ``prefix`` (a letter and 8 digits) into a valid national ID."""
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Z][12890]\d{7}", prefix):
        raise InvalidNationalId("prefix must be a capital letter, then 1, 2, 8, 9 or 0, then 7 digits")
    return str((10 - _weighted(prefix) % 10) % 10)


def normalise_national_id(national_id: str) -> str:
    """Return the canonical form of a Taiwanese national ID, or raise ``InvalidNationalId``."""
    if not isinstance(national_id, str):
        raise InvalidNationalId("national ID must be a string")
    # NFKC first: a full-width ID typed on a CJK keyboard is the same ID (and must not reach the
    # checksum table as a character it does not know).
    nid = "".join(unicodedata.normalize("NFKC", national_id).split()).upper()
    if not _FORMAT.fullmatch(nid):
        raise InvalidNationalId("national ID must be 10 characters: one letter, then 1, 2, 8, 9 or 0, then 8 digits")
    if not _checksum_ok(nid):
        raise InvalidNationalId("national ID check digit is wrong (mistyped?)")
    return nid


# base64.b32encode is pure Python (≈25 µs for 32 bytes): a batch of 23 M citizens would spend
# minutes in it. Two base32 characters per 10 bits from a table give the same text (RFC 4648,
# unpadded: 256 bits + 4 zero bits = 52 characters); tests compare it with base64.b32encode.
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_PAIRS = tuple(_B32[i >> 5] + _B32[i & 31] for i in range(1024))
_SHIFTS = tuple(range(250, -1, -10))


def _b32_256(mac: bytes) -> str:
    n = int.from_bytes(mac, "big") << 4
    pairs = _PAIRS
    return "".join([pairs[(n >> s) & 1023] for s in _SHIFTS])


def citizen_ref(national_id: str, key: bytes) -> str:
    """``cr_`` + base32(HMAC-SHA256(key, normalised national ID)); ``key`` is the blind-index key."""
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise InvalidNationalId("blind-index key must be at least 16 bytes")
    mac = hmac.digest(bytes(key), normalise_national_id(national_id).encode("ascii"), "sha256")
    return "cr_" + _b32_256(mac)


def _citizen_ref_reference(national_id: str, key: bytes) -> str:
    """The same through the standard library (tests check the fast path against it)."""
    mac = hmac.new(bytes(key), normalise_national_id(national_id).encode("ascii"), hashlib.sha256).digest()
    return "cr_" + base64.b32encode(mac).decode("ascii").rstrip("=")
