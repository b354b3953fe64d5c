"""The protected-field ciphertext format and its associated data.

Text form (fits the TEXT/VARCHAR column that held the plaintext, so tables are encrypted in place)::

    ze1:<base64( 0x01 | dek_id[8] | nonce[12] | AES-256-GCM ciphertext+tag[≥16] )>

- ``ze1:`` is the versioned prefix; the first binary byte repeats the format version so the
  authenticated header (version + DEK id, both in the AAD) cannot be swapped independently of it.
- ``dek_id`` names the data key in the key table; it is random (no coordination across writers).
- The associated data binds the value to dataset, column and the record's primary key, each
  length-prefixed so no two (dataset, column, pk) triples encode the same bytes: a ciphertext
  copied to another row or column fails to authenticate.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from keymgmt.errors import CiphertextError

PREFIX = "ze1:"
FORMAT_VERSION = 1
DEK_ID_LEN = 8
NONCE_LEN = 12
TAG_LEN = 16
_HEADER_LEN = 1 + DEK_ID_LEN
_MIN_BIN = _HEADER_LEN + NONCE_LEN + TAG_LEN
_AAD_LABEL = b"ztcp-field\x00"
# A generous bound so a hostile value cannot make us decode megabytes: fields are short.
MAX_TEXT_LEN = 1 << 20


@dataclass(frozen=True, slots=True)
class ParsedCiphertext:
    version: int
    dek_id: bytes
    nonce: bytes
    ct: bytes  # ciphertext + tag

    @property
    def header(self) -> bytes:
        return bytes([self.version]) + self.dek_id

    @property
    def dek_hex(self) -> str:
        return self.dek_id.hex()


def is_ciphertext(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def parse_ciphertext(text: object) -> ParsedCiphertext:
    """Parse the text form; anything malformed raises :class:`CiphertextError` (never another error)."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise CiphertextError("not a protected value (missing ze1: prefix)")
    if len(text) > MAX_TEXT_LEN:
        raise CiphertextError("protected value too long")
    try:
        raw = base64.b64decode(text[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise CiphertextError("protected value is not valid base64") from None
    if len(raw) < _MIN_BIN:
        raise CiphertextError("protected value too short")
    if raw[0] != FORMAT_VERSION:
        raise CiphertextError(f"unsupported protected value format {raw[0]}")
    return ParsedCiphertext(
        raw[0], raw[1:_HEADER_LEN], raw[_HEADER_LEN:_HEADER_LEN + NONCE_LEN], raw[_HEADER_LEN + NONCE_LEN:]
    )


def format_ciphertext(dek_id: bytes, nonce: bytes, ct: bytes) -> str:
    if len(dek_id) != DEK_ID_LEN or len(nonce) != NONCE_LEN or len(ct) < TAG_LEN:
        raise ValueError("bad ciphertext components")
    return PREFIX + base64.b64encode(bytes([FORMAT_VERSION]) + dek_id + nonce + ct).decode("ascii")


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def aad_prefix(dataset: str, column: str) -> bytes:
    """The part of the AAD shared by every value of one column (precomputed on hot paths)."""
    return _AAD_LABEL + _lp(dataset.encode()) + _lp(column.encode())


def field_aad(header: bytes, dataset: str, column: str, pk: object) -> bytes:
    return header + aad_prefix(dataset, column) + _lp(str(pk).encode())


def pk_part(pk: object) -> bytes:
    return _lp(str(pk).encode())
