"""Decision tokens as written by the signer's own compact serialisation (libsodium, header cached)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import OKPKey

from pdp.errors import DecisionTokenError
from pdp.tokens import ALGORITHM, DECISION_AUDIENCE, TOKEN_TYPE, DecisionTokenSigner

CLAIMS = {"jti": "d-1", "sub": "emp-0042", "effect": "permit", "action": "read", "citizen_ref": "cr_X",
          "dataset": "insured_persons", "record_id": "r-1", "fields": ["name", "名字"], "purpose": "benefit_review",
          "case_id": "C-1", "obligations": [{"type": "record_provenance"}], "rev": "r1"}


def _part(token: str, index: int) -> bytes:
    raw = token.split(".")[index]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def test_token_is_a_standard_compact_jws_with_the_same_signature_as_openssl():
    key = Ed25519PrivateKey.generate()
    signer = DecisionTokenSigner(key, "https://pdp.test", ttl_seconds=60)
    token, iat, exp = signer.sign(CLAIMS, now=1_800_000_000)
    assert (iat, exp) == (1_800_000_000, 1_800_000_060)
    header = json.loads(_part(token, 0))
    assert header == {"alg": ALGORITHM, "kid": signer.kid, "typ": TOKEN_TYPE}
    assert "=" not in token  # base64url without padding (RFC 7515 §2)
    # Ed25519 is deterministic: libsodium's signature is the one cryptography (OpenSSL) makes.
    signing_input = token.rsplit(".", 1)[0].encode()
    assert _part(token, 2) == key.sign(signing_input)
    # and a generic JOSE library reads it
    decoded = jwt.decode(token, OKPKey.import_key(key.public_key()), algorithms=[ALGORITHM])
    assert decoded.claims == {**CLAIMS, "iss": "https://pdp.test", "aud": DECISION_AUDIENCE, "iat": iat, "exp": exp}


def test_token_verifies_and_binds_its_claims():
    signer = DecisionTokenSigner(Ed25519PrivateKey.generate(), "https://pdp.test", ttl_seconds=60)
    token, iat, _ = signer.sign(CLAIMS, now=1_800_000_000)
    claims = signer.verifier().verify(token, now=iat + 1)
    assert (claims.subject, claims.record_id, claims.fields) == ("emp-0042", "r-1", ("name", "名字"))
    tampered = token.split(".")
    tampered[1] = tampered[1][:-2] + ("A" if tampered[1][-2] != "A" else "B") + tampered[1][-1]
    with pytest.raises(DecisionTokenError):
        signer.verifier().verify(".".join(tampered), now=iat + 1)
    with pytest.raises(DecisionTokenError) as info:
        DecisionTokenSigner(Ed25519PrivateKey.generate(), "https://pdp.test").verifier().verify(token, now=iat + 1)
    assert info.value.reason == "unknown_key"
