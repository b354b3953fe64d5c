"""Bearer authentication for the HTTP API: calling systems by scope, end users by their token.

Both are FastAPI dependencies built from one :class:`~pdp.identity.JwtVerifier`. A missing token is
401 with ``WWW-Authenticate: Bearer``; a token without the scope is 403 (RFC 6750 §3.1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from pdp.errors import TokenError
from pdp.identity import CallerIdentity, JwtVerifier, SubjectIdentity
from pdp.problems import Problem


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer …`` header value (RFC 6750 §2.1), or None."""
    scheme, _, value = header.partition(" ")
    token = value.strip()
    return token if scheme.lower() == "bearer" and token else None


def _bearer(request: Request) -> str:
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise Problem(401, "Unauthorized", "a Bearer token is required",
                      headers={"WWW-Authenticate": 'Bearer realm="ztcp"'})
    return token


class BearerAuth:
    def __init__(self, verifier: JwtVerifier) -> None:
        self.verifier = verifier

    def require_scope(self, scope: str) -> Callable[[Request], Awaitable[CallerIdentity]]:
        async def dependency(request: Request) -> CallerIdentity:
            token = _bearer(request)
            try:
                caller = self.verifier.verify_caller(token)
            except TokenError as exc:
                raise Problem(401, "Unauthorized", f"caller token refused: {exc.reason}",
                              headers={"WWW-Authenticate": f'Bearer realm="ztcp", error="invalid_token", '
                                                           f'error_description="{exc.reason}"'}) from None
            if not caller.has_scope(scope):
                raise Problem(403, "Forbidden", f"caller {caller.client_id} lacks scope {scope}",
                              headers={"WWW-Authenticate": f'Bearer realm="ztcp", error="insufficient_scope", '
                                                           f'scope="{scope}"'})
            return caller

        dependency.__name__ = f"require_scope_{scope.replace(':', '_')}"
        return dependency

    def require_subject(self) -> Callable[[Request], Awaitable[SubjectIdentity]]:
        async def dependency(request: Request) -> SubjectIdentity:
            token = _bearer(request)
            try:
                return self.verifier.verify_subject(token)
            except TokenError as exc:
                raise Problem(401, "Unauthorized", f"token refused: {exc.reason}",
                              headers={"WWW-Authenticate": f'Bearer realm="ztcp", error="invalid_token", '
                                                           f'error_description="{exc.reason}"'}) from None

        return dependency
