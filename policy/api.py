"""``GET /v1/bundles/{name}``: the OPA bundle service API over the revision store.

OPA instances configured with ``services.ztcp.url = https://host/v1`` and
``bundles.ztcp.resource = bundles/ztcp`` (plus ``signing.keyid`` / ``keys`` for our Ed25519 key and
scope ``write``) poll this endpoint; the ETag (SHA-256 of the bundle bytes) lets them skip
unchanged bundles with ``If-None-Match`` → 304. ``ztcp`` is the active bundle, ``ztcp-shadow`` the
shadow one. Callers need a token with scope ``bundles:read``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from policy.revisions import PublishedBundle, RevisionStore

BUNDLE_SCOPE = "bundles:read"
BUNDLE_NAMES = {"ztcp": "active", "ztcp-shadow": "shadow"}
BUNDLE_MEDIA_TYPE = "application/gzip"


class Auth(Protocol):
    def require_scope(self, scope: str) -> Any: ...


def etag_of(bundle: bytes) -> str:
    return '"' + hashlib.sha256(bundle).hexdigest() + '"'


def _matches(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison over a comma-separated If-None-Match list."""
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def create_router(store: RevisionStore, auth: Auth) -> APIRouter:
    router = APIRouter(tags=["policy"])

    @router.get(
        "/v1/bundles/{name}",
        summary="Signed policy bundle (OPA bundle service API)",
        responses={
            200: {"content": {BUNDLE_MEDIA_TYPE: {}}, "description": "the signed bundle (tar.gz)"},
            304: {"description": "not modified (If-None-Match matched the ETag)"},
            404: {"description": "unknown bundle name, or nothing published in that slot"},
        },
    )
    def get_bundle(name: str, request: Request, _caller: Any = Depends(auth.require_scope(BUNDLE_SCOPE))) -> Response:
        slot = BUNDLE_NAMES.get(name.removesuffix(".tar.gz"))
        if slot is None:
            raise HTTPException(404, f"no bundle named {name!r} (known: {', '.join(sorted(BUNDLE_NAMES))})")
        published: PublishedBundle | None = store.active() if slot == "active" else store.shadow()
        if published is None:
            raise HTTPException(404, f"no {slot} policy revision is published")
        etag = etag_of(published.bundle)
        headers = {
            "ETag": etag,
            "Cache-Control": "no-cache",
            "X-Ztcp-Revision": published.revision,
            "X-Ztcp-Digest": published.digest,
        }
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(content=published.bundle, media_type=BUNDLE_MEDIA_TYPE, headers=headers)

    return router
