"""Verifying the JWTs that reach the PDP: end users' subject tokens and calling systems' bearer tokens.

Everything the PDP knows about who is asking comes from here, never from a request body. Rules:
asymmetric algorithms only (no ``none``, no HMAC — an HMAC "verified" with a public key is the
classic confusion attack), a ``kid`` that names a key in the issuer's JWKS (an unknown kid
triggers at most one JWKS refresh per interval, to follow key rotation without letting a forger
hammer the IdP), issuer and audience exact, ``exp``/``nbf``/``iat`` with a small leeway. Caller
tokens are RFC 9068 access tokens (``typ: at+jwt``) and subject tokens must not be, so neither can
stand in for the other.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

import httpx
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization
from pydantic import BaseModel, ConfigDict

from pdp.errors import CallerTokenError, ConfigurationError, SubjectTokenError, TokenError

V = TypeVar("V")

ALLOWED_ALGORITHMS = ("Ed25519", "EdDSA", "ES256", "ES384", "PS256", "RS256")
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret

AuthMethod = Literal["none", "password", "otp", "fido2", "citizen_cert"]
# Strength ordering used by policy: password < OTP < FIDO2 / citizen digital certificate.
AUTH_STRENGTH: dict[str, int] = {"none": 0, "password": 1, "otp": 2, "fido2": 3, "citizen_cert": 3}
# RFC 8176 authentication method references → our method names (strongest wins).
_AMR_METHOD = {"pwd": "password", "otp": "otp", "sms": "otp", "tel": "otp", "hwk": "fido2",
               "fido": "fido2", "sc": "citizen_cert"}


class SubjectIdentity(BaseModel):
    """The end user as the verified token states them."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str = "employee"
    roles: tuple[str, ...] = ()
    org_unit: str | None = None
    auth_method: str = "none"
    mfa: bool = False
    auth_time: int | None = None
    issued_at: int | None = None
    expires_at: int
    citizen_ref: str | None = None

    @property
    def auth_strength(self) -> int:
        return AUTH_STRENGTH.get(self.auth_method, 0)

    @property
    def sub(self) -> str:
        """The JWT ``sub`` claim (same as ``id``), for code written against claim names."""
        return self.id


class CallerIdentity(BaseModel):
    """A calling system (PEP) authenticated by its bearer token."""

    model_config = ConfigDict(frozen=True)

    sub: str
    client_id: str
    scopes: frozenset[str]
    expires_at: int

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class KeySource(Protocol):
    """Where an issuer's public keys come from. ``refresh`` is rate-limited by the verifier."""

    def key_set(self) -> KeySet: ...

    def refresh(self) -> None: ...


class StaticKeySource:
    """A JWKS given in process (the embedded development issuer, tests)."""

    def __init__(self, jwks: KeySetSerialization | Callable[[], KeySetSerialization]) -> None:
        self._jwks = jwks
        self._keys = self._load()

    def _load(self) -> KeySet:
        value = self._jwks() if callable(self._jwks) else self._jwks
        return KeySet.import_key_set(value)

    def key_set(self) -> KeySet:
        return self._keys

    def refresh(self) -> None:
        self._keys = self._load()


class OidcKeySource:
    """An external IdP found by OIDC discovery (``/.well-known/openid-configuration`` → ``jwks_uri``)."""

    def __init__(self, issuer: str, *, timeout: float = 5.0, client: httpx.Client | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._keys: KeySet | None = None
        self.jwks_uri: str | None = None

    @classmethod
    def jwks_only(cls, jwks_uri: str, *, timeout: float = 5.0) -> OidcKeySource:
        """A key source for a service that publishes a JWKS but no OIDC discovery (e.g. an MDM)."""
        source = cls(jwks_uri, timeout=timeout)
        source.jwks_uri = jwks_uri
        return source

    def _discover(self) -> str:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            response = self._client.get(url)
            response.raise_for_status()
            doc = response.json()
            # Authlib's validators assume strings (anything else escapes them as an AttributeError).
            if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("issuer", "jwks_uri")):
                raise ValueError("issuer and jwks_uri must be strings")
            metadata = OpenIDProviderMetadata(doc)
            metadata.validate_issuer()
            metadata.validate_jwks_uri()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConfigurationError(f"OIDC discovery failed for {self.issuer}: {exc}") from None
        if str(metadata["issuer"]).rstrip("/") != self.issuer:
            raise ConfigurationError(f"OIDC discovery at {url} names another issuer: {metadata['issuer']}")
        return str(metadata["jwks_uri"])

    def refresh(self) -> None:
        if self.jwks_uri is None:
            self.jwks_uri = self._discover()
        try:
            response = self._client.get(self.jwks_uri)
            response.raise_for_status()
            self._keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise ConfigurationError(f"cannot load JWKS from {self.jwks_uri}: {exc}") from None

    def key_set(self) -> KeySet:
        if self._keys is None:
            self.refresh()
        assert self._keys is not None
        return self._keys


class _VerifiedCache(Generic[V]):
    """Small LRU of verified tokens: verification costs ~80 µs, a dict hit well under 1 µs."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._items: OrderedDict[bytes, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.blake2b(token.encode(), digest_size=20).digest()

    def get(self, token: str, now: float, leeway: int) -> V | None:
        k = self.key(token)
        with self._lock:
            hit = self._items.get(k)
            if hit is None:
                return None
            value, exp = hit
            if now > exp + leeway:
                del self._items[k]
                return None
            self._items.move_to_end(k)
            return value

    def put(self, token: str, value: V, exp: int) -> None:
        with self._lock:
            self._items[self.key(token)] = (value, exp)
            if len(self._items) > self._size:
                self._items.popitem(last=False)


class JwtVerifier:
    """Verifies tokens of one issuer for one audience."""

    def __init__(
        self,
        keys: KeySource,
        issuer: str,
        audience: str,
        *,
        leeway_seconds: int = 30,
        algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS,
        refresh_interval: float = 60.0,
        cache_size: int = 10_000,
    ) -> None:
        bad = [a for a in algorithms if a == "none" or a.startswith("HS")]
        if bad:
            raise ConfigurationError(f"algorithms not allowed for identity tokens: {bad}")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        self.algorithms = tuple(algorithms)
        self._refresh_interval = refresh_interval
        self._last_refresh = 0.0
        self._refresh_lock = threading.Lock()
        self._subjects: _VerifiedCache[SubjectIdentity] = _VerifiedCache(cache_size)
        self._callers: _VerifiedCache[CallerIdentity] = _VerifiedCache(cache_size)

    # -- the generic part -------------------------------------------------------------------
    def _key_set_with(self, kid: str) -> KeySet | None:
        keys = self.keys.key_set()  # may raise ConfigurationError: the caller maps it to a refusal
        if self._has_kid(keys, kid):
            return keys
        with self._refresh_lock:  # key rotation at the IdP: look again, but not on every request
            if time.monotonic() - self._last_refresh >= self._refresh_interval:
                self._last_refresh = time.monotonic()
                try:
                    self.keys.refresh()
                except ConfigurationError:
                    return None
        keys = self.keys.key_set()
        return keys if self._has_kid(keys, kid) else None

    @staticmethod
    def _has_kid(keys: KeySet, kid: str) -> bool:
        return any(k.kid == kid for k in keys.keys)

    def verify_claims(self, token: str, error: type[TokenError], *, now: float | None = None,
                      want_typ: str | None = None,
                      refuse_typ: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Verify signature and registered claims; return (header, claims)."""
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_384:
            raise error("malformed", "not a compact JWS")
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError):
            raise error("malformed", "unreadable header") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise error("bad_algorithm", f"alg {str(alg)[:16]!r} is not allowed")
        typ = str(header.get("typ", "")).lower()
        if want_typ and typ != want_typ:
            raise error("wrong_token_type", f"expected typ {want_typ}")
        if refuse_typ and typ == refuse_typ:
            raise error("wrong_token_type", f"typ {refuse_typ} is not accepted here")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise error("missing_kid")
        try:
            keys = self._key_set_with(kid)
        except ConfigurationError:
            raise error("keys_unavailable", "the issuer's JWKS cannot be loaded") from None
        if keys is None:
            raise error("unknown_kid")
        try:
            decoded = jwt.decode(token, keys, algorithms=[alg])
        except JoseError as exc:
            raise error("bad_signature", exc.error) from None
        claims = decoded.claims
        current = time.time() if now is None else now
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise error("malformed", "exp missing")
        if current > exp + self.leeway:
            raise error("expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and current + self.leeway < nbf:
            raise error("not_yet_valid")
        iat = claims.get("iat")
        if isinstance(iat, int | float) and current + self.leeway < iat:
            raise error("not_yet_valid", "issued in the future")
        if claims.get("iss") != self.issuer:
            raise error("wrong_issuer")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.audience not in audiences:
            raise error("wrong_audience")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise error("malformed", "sub missing")
        return header, claims

    # -- the two token kinds ----------------------------------------------------------------
    def verify_subject(self, token: str, *, now: float | None = None) -> SubjectIdentity:
        current = time.time() if now is None else now
        cached = self._subjects.get(token, current, self.leeway)
        if cached is not None:
            return cached
        _, claims = self.verify_claims(token, SubjectTokenError, now=now, refuse_typ=ACCESS_TOKEN_TYP)
        identity = subject_from_claims(claims)
        self._subjects.put(token, identity, int(claims["exp"]))
        return identity

    def verify_caller(self, token: str, *, now: float | None = None) -> CallerIdentity:
        current = time.time() if now is None else now
        cached = self._callers.get(token, current, self.leeway)
        if cached is not None:
            return cached
        _, claims = self.verify_claims(token, CallerTokenError, now=now, want_typ=ACCESS_TOKEN_TYP)
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise CallerTokenError("malformed", "scope must be a space-separated string")
        identity = CallerIdentity(
            sub=claims["sub"],
            client_id=str(claims.get("client_id", claims["sub"])),
            scopes=frozenset(scope.split()),
            expires_at=int(claims["exp"]),
        )
        self._callers.put(token, identity, int(claims["exp"]))
        return identity


def auth_method_from_claims(claims: dict[str, Any]) -> str:
    method = claims.get("auth_method")
    if isinstance(method, str) and method in AUTH_STRENGTH:
        return method
    amr = claims.get("amr") or []
    candidates = [_AMR_METHOD[a] for a in amr if isinstance(a, str) and a in _AMR_METHOD]
    return max(candidates, key=lambda m: AUTH_STRENGTH[m], default="none")


def subject_from_claims(claims: dict[str, Any]) -> SubjectIdentity:
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise SubjectTokenError("malformed", "roles must be a list of strings")
    amr = claims.get("amr") or []
    method = auth_method_from_claims(claims)
    mfa = bool(claims.get("mfa")) or "mfa" in amr or len({a for a in amr if a in _AMR_METHOD}) >= 2
    return SubjectIdentity(
        id=claims["sub"],
        type=str(claims.get("subject_type", "employee")),
        roles=tuple(sorted(set(roles))),
        org_unit=claims.get("org_unit"),
        auth_method=method,
        mfa=mfa,
        auth_time=int(claims["auth_time"]) if isinstance(claims.get("auth_time"), int | float) else None,
        issued_at=int(claims["iat"]) if isinstance(claims.get("iat"), int | float) else None,
        expires_at=int(claims["exp"]),
        citizen_ref=claims.get("citizen_ref"),
    )
