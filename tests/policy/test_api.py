"""GET /v1/bundles/{name}: auth by scope, ETag / If-None-Match, active and shadow bundles."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from policy import RevisionStore, ensure_initial_revision, pack_from_files, verify_bundle
from policy.api import BUNDLE_SCOPE, create_router, etag_of
from policy.bundle import SHADOW_SCOPE


class JwtScopeAuth:
    """A small real bearer-token check (Ed25519 JWT with a space-separated ``scope`` claim)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = OKPKey.import_key(key.public_key())
        self._private = OKPKey.import_key(key)

    def issue(self, scope: str, ttl: int = 60) -> str:
        now = int(time.time())
        return jwt.encode(
            {"alg": "Ed25519"},
            {"sub": "opa-1", "scope": scope, "exp": now + ttl},
            self._private,
            algorithms=["Ed25519"],
        )

    def require_scope(self, scope: str):
        def dependency(request: Request) -> str:
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                raise HTTPException(401, "a Bearer token is required")
            try:
                token = jwt.decode(header[7:], self.key, algorithms=["Ed25519"])
                jwt.JWTClaimsRegistry(exp={"essential": True}).validate(token.claims)
            except (JoseError, ValueError):
                raise HTTPException(401, "invalid token") from None
            if scope not in str(token.claims.get("scope", "")).split():
                raise HTTPException(403, f"missing scope {scope}")
            return token.claims["sub"]

        return dependency


@pytest.fixture
def setup(tmp_path, base_files, signing_key):
    store = RevisionStore.in_home(tmp_path / "home")
    auth = JwtScopeAuth(Ed25519PrivateKey.generate())
    app = FastAPI()
    app.include_router(create_router(store, auth))
    with TestClient(app) as client:
        yield client, store, auth
    store.close()


def test_auth_required(setup):
    client, _, auth = setup
    assert client.get("/v1/bundles/ztcp").status_code == 401
    assert client.get("/v1/bundles/ztcp", headers={"Authorization": "Bearer junk"}).status_code == 401
    wrong = {"Authorization": f"Bearer {auth.issue('pdp:decide')}"}
    assert client.get("/v1/bundles/ztcp", headers=wrong).status_code == 403
    expired = {"Authorization": f"Bearer {auth.issue(BUNDLE_SCOPE, ttl=-120)}"}
    assert client.get("/v1/bundles/ztcp", headers=expired).status_code == 401


def test_nothing_published_and_unknown_name(setup):
    client, _, auth = setup
    headers = {"Authorization": f"Bearer {auth.issue(BUNDLE_SCOPE)}"}
    assert client.get("/v1/bundles/ztcp", headers=headers).status_code == 404
    assert client.get("/v1/bundles/other", headers=headers).status_code == 404


def test_serves_active_bundle_with_etag_and_304(setup, base_files, signing_key):
    client, store, auth = setup
    ensure_initial_revision(store, pack_from_files(base_files), signing_key)
    headers = {"Authorization": f"Bearer {auth.issue(BUNDLE_SCOPE)}"}
    resp = client.get("/v1/bundles/ztcp", headers=headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/gzip"
    assert resp.headers["etag"] == etag_of(resp.content) == etag_of(store.active().bundle)
    assert resp.headers["x-ztcp-revision"] == "r1"
    assert verify_bundle(resp.content, [signing_key.public_key()]).revision == "r1"
    again = client.get("/v1/bundles/ztcp", headers={**headers, "If-None-Match": resp.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    listed = client.get(
        "/v1/bundles/ztcp.tar.gz", headers={**headers, "If-None-Match": f'"x", W/{resp.headers["etag"]}'}
    )
    assert listed.status_code == 304
    stale = client.get("/v1/bundles/ztcp", headers={**headers, "If-None-Match": '"stale"'})
    assert stale.status_code == 200


def test_etag_changes_on_publish_and_shadow_is_separate(setup, base_files, signing_key):
    client, store, auth = setup
    ensure_initial_revision(store, pack_from_files(base_files), signing_key)
    headers = {"Authorization": f"Bearer {auth.issue(BUNDLE_SCOPE)}"}
    first = client.get("/v1/bundles/ztcp", headers=headers).headers["etag"]
    changed = dict(base_files)
    changed["ztcp/extra.rego"] = b"package ztcp.extra\n\nimport rego.v1\n\nx := 1\n"
    store.propose(pack_from_files(changed), author="alice", message="m")
    store.publish("r2", actor="alice", signer=signing_key, shadow=True)
    shadow = client.get("/v1/bundles/ztcp-shadow", headers=headers)
    assert shadow.status_code == 200 and shadow.headers["x-ztcp-revision"] == "r2"
    assert verify_bundle(shadow.content, [signing_key.public_key()], scope=SHADOW_SCOPE).revision == "r2"
    assert client.get("/v1/bundles/ztcp", headers=headers).headers["etag"] == first
    store.approve("r2", approver="bob")
    store.publish("r2", actor="alice", signer=signing_key)
    resp = client.get("/v1/bundles/ztcp", headers={**headers, "If-None-Match": first})
    assert resp.status_code == 200 and resp.headers["etag"] != first and resp.headers["x-ztcp-revision"] == "r2"
