"""Decision tokens: short-lived compact JWS (Ed25519) binding a permit to subject, record, fields, purpose.

The token is what keymgmt demands before it decrypts a field, so it carries exactly what the
decryption path must check and nothing personal: ``citizen_ref`` only, field *names* only.
The JWS algorithm is ``Ed25519`` (RFC 9864's fully-specified name for EdDSA over Ed25519; the
polymorphic ``EdDSA`` name is deprecated there). Only that algorithm is accepted on verification.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import DictKey, Key, KeySet, OKPKey
from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, Field

from pdp.errors import DecisionTokenError

ALGORITHM = "Ed25519"
DECISION_AUDIENCE = "ztcp:decision"
TOKEN_TYPE = "ztcp-decision+jwt"  # noqa: S105 - a media type, not a secret
_DEFAULT_LEEWAY = 2


class DecisionClaims(BaseModel):
    """The verified content of a decision token."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    decision_id: str = Field(alias="jti")
    issuer: str = Field(alias="iss")
    subject: str = Field(alias="sub")
    issued_at: int = Field(alias="iat")
    expires_at: int = Field(alias="exp")
    effect: str
    citizen_ref: str | None = None
    dataset: str | None = None
    record_id: str | None = None
    action: str
    fields: tuple[str, ...] = ()
    purpose: str | None = None
    case_id: str | None = None
    obligations: tuple[dict[str, Any], ...] = ()
    policy_revision: str | None = Field(default=None, alias="rev")
    recipient: dict[str, Any] | None = None  # action "disclose": {"type", "id"} the permit allows the data to go to

    def covers(self, fields: Iterable[str]) -> bool:
        """True when every requested field is among the permitted ones."""
        return set(fields) <= set(self.fields)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint, so the kid is derived from the key and never collides across rotations."""
    return OKPKey.import_key(public_key).thumbprint()


class DecisionTokenSigner:
    """Signs decision tokens with one Ed25519 key; publishes its public JWK."""

    def __init__(self, private_key: Ed25519PrivateKey, issuer: str, ttl_seconds: int = 60) -> None:
        if ttl_seconds <= 0 or ttl_seconds > 3600:
            raise ValueError("decision token ttl must be between 1 and 3600 seconds")
        self.kid = key_id(private_key.public_key())
        self._key = OKPKey.import_key(private_key, {"kid": self.kid, "use": "sig", "alg": ALGORITHM})
        self.public_key = private_key.public_key()
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        # Every permit is signed, so the signature is the largest cost on the decide path after
        # the policy itself. libsodium (PyNaCl) over the key expanded once here signs in about
        # 60 % of the instructions of cryptography's OpenSSL call, which sets up an EVP context per
        # signature; Ed25519 is deterministic, so the bytes are the same either way
        # (tests/pdp/test_tokens.py compares them), and joserfc still verifies.
        self._signing_key = SigningKey(private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
        # The protected header never changes: serialised and encoded once.
        self._header_b64 = _b64(orjson.dumps({"alg": ALGORITHM, "kid": self.kid, "typ": TOKEN_TYPE}))

    def sign(self, claims: dict[str, Any], *, now: int | None = None) -> tuple[str, int, int]:
        """Sign ``claims`` (jti, sub, effect, action, …); returns (token, iat, exp).

        RFC 7515 compact serialisation written directly (header and payload base64url, "." joined,
        signed as bytes): joserfc's generic path re-validates the header and looks the key up for
        every token, which cost a third as much as the signature itself.
        """
        iat = int(now if now is not None else time.time())
        exp = iat + self.ttl_seconds
        payload = {**claims, "iss": self.issuer, "aud": DECISION_AUDIENCE, "iat": iat, "exp": exp}
        signing_input = self._header_b64 + b"." + _b64(orjson.dumps(payload))
        signature = self._signing_key.sign(signing_input).signature
        return (signing_input + b"." + _b64(signature)).decode("ascii"), iat, exp

    def public_jwk(self) -> DictKey:
        return self._key.as_dict(private=False)

    def verifier(self) -> DecisionTokenVerifier:
        return DecisionTokenVerifier([self.public_key], issuer=self.issuer)


class DecisionTokenVerifier:
    """Verifies decision tokens against a set of trusted public keys (old keys kept during rotation)."""

    def __init__(
        self,
        public_keys: Iterable[Ed25519PublicKey],
        issuer: str,
        leeway_seconds: int = _DEFAULT_LEEWAY,
    ) -> None:
        keys: list[Key] = [OKPKey.import_key(k, {"kid": key_id(k)}) for k in public_keys]
        if not keys:
            raise ValueError("a decision token verifier needs at least one public key")
        self._keys = KeySet(keys)
        self._kids = {k.kid for k in keys}
        self.issuer = issuer
        self.leeway = leeway_seconds

    def verify(self, token: str, *, now: float | None = None) -> DecisionClaims:
        if not isinstance(token, str) or token.count(".") != 2:
            raise DecisionTokenError("malformed", "not a compact JWS")
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise DecisionTokenError("malformed", type(exc).__name__) from None
        if header.get("alg") != ALGORITHM:
            raise DecisionTokenError("bad_algorithm", str(header.get("alg"))[:20])
        if header.get("kid") not in self._kids:
            raise DecisionTokenError("unknown_key")
        try:
            decoded = jwt.decode(token, self._keys, algorithms=[ALGORITHM])
        except JoseError as exc:
            raise DecisionTokenError("bad_signature", exc.error) from None
        c = decoded.claims
        current = time.time() if now is None else now
        if c.get("iss") != self.issuer:
            raise DecisionTokenError("wrong_issuer")
        if c.get("aud") != DECISION_AUDIENCE:
            raise DecisionTokenError("wrong_audience")
        exp, iat = c.get("exp"), c.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise DecisionTokenError("malformed", "exp/iat missing")
        if current > exp + self.leeway:
            raise DecisionTokenError("expired")
        if current + self.leeway < iat:
            raise DecisionTokenError("not_yet_valid")
        if c.get("effect") != "permit":
            raise DecisionTokenError("not_a_permit")
        try:
            return DecisionClaims.model_validate(c)
        except ValueError:
            raise DecisionTokenError("malformed", "claims do not match the decision token schema") from None


def verify_decision_token(
    token: str, verifier: DecisionTokenVerifier, *, now: float | None = None
) -> DecisionClaims:
    """Verify a decision token; raise :class:`DecisionTokenError` on anything wrong. Public for keymgmt."""
    return verifier.verify(token, now=now)
