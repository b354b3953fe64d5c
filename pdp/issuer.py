"""The embedded development issuer: signs subject and caller tokens for a one-machine install.

A bureau points ztcp at its real IdP (``ZTCP_IDP_ISSUER``); this issuer exists so that embedded
mode, the demo and the tests exercise the very same verification path (JWKS, kid, iss, aud, exp)
rather than a shortcut. Its keys live in the sealed keyring; old versions stay in the JWKS until
retired so tokens signed before a rotation keep verifying.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jwt
from joserfc.jwk import KeySet, KeySetSerialization, OKPKey

from pdp.identity import ACCESS_TOKEN_TYP, AUTH_STRENGTH
from pdp.tokens import key_id

ALGORITHM = "Ed25519"
_AMR = {"password": ["pwd"], "otp": ["pwd", "otp"], "fido2": ["hwk", "pop"], "citizen_cert": ["sc", "pop"]}
MAX_TTL_SECONDS = 24 * 3600


class DevIssuer:
    def __init__(
        self,
        signing_key: Ed25519PrivateKey,
        issuer: str,
        audience: str,
        *,
        verification_keys: Iterable[Ed25519PublicKey] = (),
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = key_id(signing_key.public_key())
        self._key = OKPKey.import_key(signing_key, {"kid": self.kid})
        publics = {key_id(k): k for k in verification_keys}
        publics[self.kid] = signing_key.public_key()
        self._public = publics

    def jwks(self) -> KeySetSerialization:
        keys = [
            OKPKey.import_key(pub, {"kid": kid, "use": "sig", "alg": ALGORITHM}).as_dict(private=False)
            for kid, pub in sorted(self._public.items())
        ]
        return {"keys": keys}

    def key_set(self) -> KeySet:
        return KeySet.import_key_set(self.jwks())

    def _sign(self, claims: dict[str, Any], ttl_seconds: int, typ: str, now: float | None) -> str:
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl must be between 1 second and {MAX_TTL_SECONDS // 3600} hours")
        iat = int(time.time() if now is None else now)
        payload = {**claims, "iss": self.issuer, "aud": self.audience, "iat": iat, "nbf": iat,
                   "exp": iat + ttl_seconds}
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": typ}
        return jwt.encode(header, payload, self._key, algorithms=[ALGORITHM])

    def issue_subject(
        self,
        sub: str,
        roles: Sequence[str],
        *,
        method: str = "password",
        mfa: bool = False,
        ttl_seconds: int = 900,
        org_unit: str | None = None,
        subject_type: str = "employee",
        citizen_ref: str | None = None,
        auth_time: int | None = None,
        now: float | None = None,
    ) -> str:
        if method not in AUTH_STRENGTH or method == "none":
            raise ValueError(f"unknown authentication method {method!r}; one of {sorted(_AMR)}")
        amr = list(_AMR[method]) + (["mfa"] if mfa else [])
        iat = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "sub": sub,
            "roles": sorted(set(roles)),
            "subject_type": subject_type,
            "auth_method": method,
            "amr": amr,
            "mfa": bool(mfa),
            "auth_time": auth_time if auth_time is not None else iat,
        }
        if org_unit:
            claims["org_unit"] = org_unit
        if citizen_ref:
            claims["citizen_ref"] = citizen_ref
        return self._sign(claims, ttl_seconds, "JWT", now)

    def issue_client(
        self, client: str, scopes: Sequence[str], *, ttl_seconds: int = 3600, now: float | None = None
    ) -> str:
        """An RFC 9068 access token for a calling system (client credentials)."""
        if not scopes:
            raise ValueError("a client token needs at least one scope")
        claims = {"sub": client, "client_id": client, "scope": " ".join(sorted(set(scopes)))}
        return self._sign(claims, ttl_seconds, ACCESS_TOKEN_TYP, now)
