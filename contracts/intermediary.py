"""``intermediary_ref``: how the agent or doctor named on a benefit claim is named in events.

A claim is often filed through an agent (代辦人) or rests on one doctor's certificate; the bureau's
early-warning programme watches for one of them behind an unusual share of claims. Like
``bank_account_ref`` it is a keyed reference (same blind-index key, its own domain label), so the
SIEM can count claims per intermediary without any log holding a licence or ID number:
``im_`` + unpadded base32 of HMAC-SHA256(key, "intermediary:" + normalised licence number).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

INTERMEDIARY_REF_PATTERN = r"^im_[A-Z2-7]{52}$"
_DOMAIN = b"intermediary:"
_LICENCE = re.compile(r"[A-Z0-9]{4,32}")


def intermediary_ref(licence: str, key: bytes) -> str:
    """``im_`` + base32(HMAC-SHA256(key, "intermediary:" + licence)); ``key`` is the blind-index key."""
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise ValueError("blind-index key must be at least 16 bytes")
    norm = re.sub(r"[\s\-]", "", str(licence)).upper()
    if not _LICENCE.fullmatch(norm):
        raise ValueError("a licence number is 4 to 32 letters or digits")  # never echo the value
    mac = hmac.new(bytes(key), _DOMAIN + norm.encode("ascii"), hashlib.sha256).digest()
    return "im_" + base64.b32encode(mac).decode("ascii").rstrip("=")
