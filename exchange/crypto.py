"""The exchange's cryptography: signatures (compact JWS, Ed25519, through joserfc) and the payload
sealed to the agency (HPKE, RFC 9180, wrapping a content key; AES-256-GCM segments under it).

**Signatures.** The signer is anything with ``public_key()`` and ``sign(data)``: the sealed local
keyring's Ed25519 key, or ``keymgmt.TransitSigningKey`` (Vault/OpenBao transit: the private key
never reaches this host). joserfc serialises and verifies; a signer-backed algorithm model lets a
remote key sign the JWS signing input without joserfc ever holding the private key.

**The sealed payload** (``payload.ztcp``), built for 23 M records, written as it is read, resumable::

    ZTCP-SEALED/1\\n
    {header JSON}\\n            scheme, transfer id, agreement, recipient key thumbprint,
                               enc (HPKE encapsulation of the content key), nonce prefix
    ( u32 length ‖ AES-256-GCM(segment) )*     nonce = prefix(7) ‖ counter(4) ‖ last(1)

Every segment's AAD is SHA-256 of the two header lines, so the header cannot be swapped; segments
are numbered by their nonce, so none can be dropped, reordered or repeated; the last one is flagged,
so truncation shows. The content key comes from the key provider's datakey (wrapped under the data
KEK), so a job killed with -9 resumes with the same key from its wrapped copy, never from plaintext
on disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from joserfc.jws import JWSAlgModel, JWSRegistry

from exchange.errors import ExchangeInputError, ExchangeIntegrityError

ALGORITHM = "Ed25519"  # RFC 9864's fully-specified name (as decision tokens use)
MAGIC = b"ZTCP-SEALED/1\n"
SCHEME = "hpke-x25519-aes256gcm-stream/1"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_LEN = struct.Struct(">I")
_MAX_SEGMENT = 64 * 1024 * 1024  # a reader refuses larger (a corrupted length)


class Signer(Protocol):
    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


# -- keys --------------------------------------------------------------------------------------------


def thumbprint(public_key: Ed25519PublicKey | X25519PublicKey) -> str:
    """RFC 7638 thumbprint: how records and receipts name a key."""
    return OKPKey.import_key(public_key).thumbprint()


def public_jwk(public_key: Ed25519PublicKey | X25519PublicKey, **extra: str) -> dict[str, Any]:
    jwk = OKPKey.import_key(public_key).as_dict(private=False)
    jwk["kid"] = thumbprint(public_key)
    jwk.update(extra)
    return jwk


def private_jwk(private_key: Ed25519PrivateKey | X25519PrivateKey) -> dict[str, Any]:
    jwk = OKPKey.import_key(private_key).as_dict(private=True)
    jwk["kid"] = thumbprint(private_key.public_key())
    return jwk


def load_public_jwk(jwk: Any, curve: str, where: str) -> Any:
    """An Ed25519 or X25519 public key from a JWK; ``where`` names it in errors (never the value)."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != curve or "d" in jwk:
        raise ExchangeInputError(f"{where}: must be a public OKP JWK with crv {curve}")
    try:
        key = OKPKey.import_key({k: v for k, v in jwk.items() if k in ("kty", "crv", "x")}).public_key
    except (JoseError, ValueError, TypeError) as exc:
        raise ExchangeInputError(f"{where}: not a valid {curve} key ({type(exc).__name__})") from None
    want = Ed25519PublicKey if curve == "Ed25519" else X25519PublicKey
    if not isinstance(key, want):
        raise ExchangeInputError(f"{where}: not a {curve} public key")
    return key


def load_private_jwk(jwk: Any, curve: str, where: str) -> Any:
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != curve or "d" not in jwk:
        raise ExchangeInputError(f"{where}: must be a private OKP JWK with crv {curve}")
    try:
        key = OKPKey.import_key(jwk).private_key
    except (JoseError, ValueError, TypeError) as exc:
        raise ExchangeInputError(f"{where}: not a valid {curve} private key ({type(exc).__name__})") from None
    return key


# -- JWS ----------------------------------------------------------------------------------------------


class _SignerAlgorithm(JWSAlgModel):
    """joserfc's Ed25519 model with the signature made by ``signer`` (a local or a transit key)."""

    key_type = "OKP"
    name = ALGORITHM
    description = "Ed25519 by an external signer"

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def sign(self, msg: bytes, key: Any) -> bytes:
        return self.signer.sign(msg)

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:  # pragma: no cover - verification uses joserfc's own
        raise NotImplementedError


def sign_jws(signer: Signer, payload: bytes, typ: str) -> str:
    """Compact JWS over ``payload`` (``alg`` Ed25519, ``typ``, ``kid`` = the key's thumbprint)."""
    public = signer.public_key()
    registry = JWSRegistry(algorithms=[ALGORITHM])
    registry.algorithms = {ALGORITHM: _SignerAlgorithm(signer)}  # this instance only: not joserfc's global table
    header = {"alg": ALGORITHM, "typ": typ, "kid": thumbprint(public)}
    return jws.serialize_compact(header, payload, OKPKey.import_key(public), registry=registry)


def verify_jws(token: str, public_key: Ed25519PublicKey, typ: str, what: str) -> bytes:
    """The payload of a compact JWS that ``public_key`` signed with typ ``typ``; else an integrity error."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 1_000_000:
        raise ExchangeIntegrityError(f"{what}: not a compact JWS")
    try:
        obj = jws.deserialize_compact(token.strip(), OKPKey.import_key(public_key), algorithms=[ALGORITHM])
    except JoseError as exc:
        raise ExchangeIntegrityError(f"{what}: signature does not verify ({exc.error})") from None
    if obj.headers().get("typ") != typ:
        raise ExchangeIntegrityError(f"{what}: typ is not {typ}")
    return obj.payload


def jws_signature(token: str) -> bytes:
    """The raw signature value of a compact JWS (what the RFC 3161 token is over, as in CAdES-T)."""
    part = token.strip().rsplit(".", 1)[-1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jws_payload_unverified(token: str) -> bytes:
    try:
        part = token.strip().split(".")[1]
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (IndexError, ValueError):
        raise ExchangeIntegrityError("not a compact JWS") from None


# -- sealed payload --------------------------------------------------------------------------------


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def seal_header(*, transfer_id: str, agreement_id: str, recipient: X25519PublicKey, cek: bytes,
                nonce_prefix: bytes | None = None) -> bytes:
    """The two header lines: the content key HPKE-sealed to ``recipient`` (info binds the transfer)."""
    if len(cek) != 32:
        raise ValueError("the content key must be 32 bytes")
    enc = _SUITE.encrypt(cek, recipient, info=b"ztcp-exchange/1 " + transfer_id.encode())
    head = {"scheme": SCHEME, "transfer_id": transfer_id, "agreement_id": agreement_id,
            "recipient_key": thumbprint(recipient), "enc": base64.b64encode(enc).decode(),
            "nonce_prefix": base64.b64encode(nonce_prefix or os.urandom(7)).decode()}
    return MAGIC + json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n"


class SealedWriter:
    """Makes the AES-256-GCM segments that follow a header; ``counter`` continues a resumed file.
    The caller writes them (and hashes exactly what it wrote)."""

    def __init__(self, header: bytes, cek: bytes, counter: int = 0) -> None:
        head = json.loads(header[len(MAGIC):])
        self.prefix = base64.b64decode(head["nonce_prefix"])
        self.aad = hashlib.sha256(header).digest()
        self.aead = AESGCM(cek)
        self.counter = counter

    def segment(self, plaintext: bytes, *, last: bool = False) -> bytes:
        """The next segment's bytes (length prefix and ciphertext)."""
        ct = self.aead.encrypt(_nonce(self.prefix, self.counter, last), plaintext, self.aad)
        self.counter += 1
        return _LEN.pack(len(ct)) + ct


def open_sealed(path: os.PathLike | str, private_key: X25519PrivateKey) -> tuple[dict, Iterator[bytes]]:
    """The header and an iterator of plaintext segments (the agency's side; ``ztcp exchange open``).
    Raises ``ExchangeIntegrityError`` on any tampering, reordering or truncation."""
    f = open(path, "rb")  # noqa: SIM115 - the generator owns it
    if f.readline() != MAGIC:
        f.close()
        raise ExchangeIntegrityError("payload: not a ZTCP-SEALED/1 file")
    line = f.readline()
    try:
        head = json.loads(line)
        blob = base64.b64decode(head["enc"])
        prefix = base64.b64decode(head["nonce_prefix"])
        cek = _SUITE.decrypt(blob, private_key, info=b"ztcp-exchange/1 " + head["transfer_id"].encode())
    except (ValueError, KeyError, TypeError, InvalidTag):
        f.close()
        raise ExchangeIntegrityError("payload: the header does not open with this key") from None
    aad = hashlib.sha256(MAGIC + line).digest()
    aead = AESGCM(cek)

    def segments() -> Iterator[bytes]:
        with f:
            counter = 0
            while True:
                raw = f.read(4)
                if len(raw) < 4:
                    raise ExchangeIntegrityError("payload: truncated (no final segment)")
                (n,) = _LEN.unpack(raw)
                if n > _MAX_SEGMENT:
                    raise ExchangeIntegrityError(f"payload: segment {counter} has an impossible length")
                ct = f.read(n)
                for last in (False, True):
                    try:
                        plain = aead.decrypt(_nonce(prefix, counter, last), ct, aad)
                        break
                    except InvalidTag:
                        continue
                else:
                    raise ExchangeIntegrityError(f"payload: segment {counter} fails authentication")
                counter += 1
                if last:
                    if f.read(1):
                        raise ExchangeIntegrityError("payload: bytes after the final segment")
                    yield plain
                    return
                yield plain

    return head, segments()


def sha256_file(path: os.PathLike | str, upto: int | None = None) -> tuple[hashlib._Hash, int]:
    """A running SHA-256 over the file's first ``upto`` bytes (all of them by default)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while upto is None or n < upto:
            chunk = f.read(min(1 << 20, (upto - n) if upto is not None else 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    return h, n
