"""``bank_account_ref``: how a payout bank account is named in events, never by its number.

A keyed reference like ``citizen_ref`` (same blind-index key, a different domain label so the two
can never be confused): ``ba_`` + unpadded base32 of HMAC-SHA256(key, "bank_account:" + digits).
It lets the SIEM see that several citizens' payouts now go to *the same* account (a mule account)
without the ledger, decision log or alerts ever holding an account number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from contracts.errors import InvalidBankAccount

BANK_ACCOUNT_REF_PATTERN = r"^ba_[A-Z2-7]{52}$"
_DOMAIN = b"bank_account:"
_DIGITS = re.compile(r"\d{6,20}")


def normalise_bank_account(account: str) -> str:
    """Digits only (a bank code and account number, as written with spaces or dashes)."""
    if not isinstance(account, str):
        raise InvalidBankAccount("bank account must be a string")
    digits = re.sub(r"[\s\-]", "", account)
    if not _DIGITS.fullmatch(digits):
        raise InvalidBankAccount("bank account must be 6 to 20 digits (spaces and dashes allowed)")
    return digits


def bank_account_ref(account: str, key: bytes) -> str:
    """``ba_`` + base32(HMAC-SHA256(key, "bank_account:" + digits)); ``key`` is the blind-index key."""
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise InvalidBankAccount("blind-index key must be at least 16 bytes")
    mac = hmac.new(bytes(key), _DOMAIN + normalise_bank_account(account).encode("ascii"), hashlib.sha256).digest()
    return "ba_" + base64.b32encode(mac).decode("ascii").rstrip("=")
