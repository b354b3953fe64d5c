"""Signed checkpoints: the C2SP ``tlog-checkpoint`` body in a C2SP ``signed-note`` (Ed25519).

Body::

    <origin>\\n<tree size>\\n<base64 root hash>\\n

followed by a blank line and one signature line per signer::

    — <key name> <base64(4-byte key ID ‖ Ed25519 signature over the body)>\\n

Key ID = SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)[:4]; a verifier key is written
``<name>+<hex key ID>+<base64(0x01 ‖ public key)>`` (golang.org/x/mod/sumdb/note, whose published
example note our tests reproduce byte for byte). The checkpoint key is the ledger's own Ed25519
key, separate from every data key; it may live outside the process (``Ed25519Signer``: e.g. a key
in Vault/OpenBao transit), so the host that stores the ledger cannot sign for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provenance.errors import CheckpointError
from provenance.merkle import HASH_SIZE

_ALG_ED25519 = b"\x01"
_SIG_PREFIX = "— "  # EM DASH + space, as the spec requires


class Ed25519Signer(Protocol):
    """What signs a note: cryptography's ``Ed25519PrivateKey`` or a key held elsewhere."""

    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def _key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ALG_ED25519 + public_raw).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise CheckpointError("note key name must be non-empty with no spaces or '+'")


class NoteSigner:
    def __init__(self, private_key: Ed25519PrivateKey | Ed25519Signer, name: str) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        self.public_raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = _key_id(name, self.public_raw)

    @property
    def verifier_key(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(_ALG_ED25519 + self.public_raw).decode()}"

    def verifier(self) -> NoteVerifier:
        return NoteVerifier.from_vkey(self.verifier_key)

    def sign(self, text: str) -> str:
        if not text.endswith("\n"):
            raise CheckpointError("note text must end with a newline")
        sig = self._key.sign(text.encode())
        return f"{text}\n{_SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + sig).decode()}\n"


class NoteVerifier:
    def __init__(self, name: str, public_raw: bytes) -> None:
        _check_name(name)
        self.name = name
        self.key_id = _key_id(name, public_raw)
        self._key = Ed25519PublicKey.from_public_bytes(public_raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        try:
            name, hexid, b64 = vkey.split("+", 2)
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise CheckpointError("malformed verifier key") from None
        if len(raw) != 33 or raw[:1] != _ALG_ED25519:
            raise CheckpointError("verifier key is not an Ed25519 note key")
        v = cls(name, raw[1:])
        if v.key_id.hex() != hexid:
            raise CheckpointError("verifier key ID does not match its key")
        return v

    def open(self, note: str) -> str:
        """Return the note text if one signature line is a valid signature by this key."""
        if not note.endswith("\n"):
            raise CheckpointError("signed note must end with a newline")
        split = note.rfind("\n\n")
        if split < 0:
            raise CheckpointError("signed note has no signature block")
        text, sigs = note[: split + 1], note[split + 2 :]
        if not sigs:
            raise CheckpointError("signed note has no signatures")
        found = False
        for line in sigs[:-1].split("\n"):
            if not line.startswith(_SIG_PREFIX):
                raise CheckpointError("malformed signature line in signed note")
            try:
                name, b64 = line[len(_SIG_PREFIX) :].split(" ")
                blob = base64.b64decode(b64, validate=True)
            except (ValueError, binascii.Error):
                raise CheckpointError("malformed signature line in signed note") from None
            if name != self.name or blob[:4] != self.key_id:
                continue
            try:
                self._key.verify(blob[4:], text.encode())
            except InvalidSignature:
                raise CheckpointError(f"signature by {self.name} does not verify (forged or altered note)") from None
            found = True
        if not found:
            raise CheckpointError(f"note is not signed by the trusted key {self.name}")
        return text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("checkpoint body must be origin, size and root lines")
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if not origin or not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
            raise CheckpointError("checkpoint has a malformed origin or size line")
        try:
            root = base64.b64decode(root_s, validate=True)
        except binascii.Error:
            raise CheckpointError("checkpoint root is not base64") from None
        if len(root) != HASH_SIZE:
            raise CheckpointError("checkpoint root is not a SHA-256 hash")
        return cls(origin, int(size_s), root)


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    return signer.sign(cp.body())


def open_checkpoint(note: str, verifiers: list[NoteVerifier], origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint against any of the trusted keys and parse it."""
    errors = []
    for v in verifiers:
        try:
            text = v.open(note)
        except CheckpointError as exc:
            errors.append(str(exc))
            continue
        cp = Checkpoint.parse(text)
        if origin is not None and cp.origin != origin:
            raise CheckpointError(f"checkpoint is for origin {cp.origin!r}, expected {origin!r}")
        return cp
    raise CheckpointError("; ".join(errors) or "no trusted checkpoint key")
