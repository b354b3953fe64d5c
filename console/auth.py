"""Signing in: the development issuer (pick a staff member) or the configured IdP (OIDC code + PKCE).

Development sign-in exists only while no external IdP is configured; the console then mints a
short-lived subject token for the chosen staff member with the dev issuer — exactly what
``ztcp token issue`` would give them. With an IdP, the console is an OIDC client (authlib): the
ID token is checked (signature, issuer, audience = our client id, nonce) and the access token,
which the PDP will see on every page, must verify with the same JwtVerifier the PDP uses.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from console.directory import load_directory
from console.sessions import Session
from console.web import LOGIN_COOKIE, PREFIX, Console, PageError
from pdp import SubjectTokenError, TokenError

OIDC_COOKIE = "ztcp_console_oidc"
CALLBACK = f"{PREFIX}/oidc/callback"


def mint(console: Console, sub: str, roles: tuple[str, ...], org_unit: str | None, method: str) -> tuple[str, float]:
    ttl = console.settings.token_minutes * 60
    token = console.runtime.issuer.issue_subject(sub, list(roles), method=method, mfa=method in ("fido2", "otp"),
                                                 ttl_seconds=ttl, org_unit=org_unit)
    return token, time.time() + ttl


class Oidc:
    """The console's OIDC client for ``settings.idp_issuer`` (discovery cached after first use)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.issuer = console.runtime.settings.idp_issuer.rstrip("/")
        self._meta: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            r = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5.0)
            r.raise_for_status()
            meta = r.json()
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise ValueError("discovery document names another issuer")
            self._meta = meta
        return self._meta

    def client(self, redirect_uri: str):  # noqa: ANN201
        from authlib.integrations.httpx_client import OAuth2Client

        cs = self.console.settings
        secret = cs.client_secret.get_secret_value() if cs.client_secret else None
        return OAuth2Client(client_id=cs.client_id, client_secret=secret, scope=cs.scopes,
                            redirect_uri=redirect_uri, code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_basic" if secret else "none",
                            timeout=10.0)

    def authorize_url(self, redirect_uri: str, state: str, verifier: str, nonce: str) -> str:
        with self.client(redirect_uri) as c:
            url, _ = c.create_authorization_url(self.metadata()["authorization_endpoint"], state=state,
                                                code_verifier=verifier, nonce=nonce)
        return url

    def exchange(self, redirect_uri: str, code: str, verifier: str, nonce: str) -> Session:
        from pdp.identity import JwtVerifier, OidcKeySource

        with self.client(redirect_uri) as c:
            token = c.fetch_token(self.metadata()["token_endpoint"], grant_type="authorization_code", code=code,
                                  code_verifier=verifier)
        id_token, access = token.get("id_token"), token.get("access_token")
        if not id_token or not access:
            raise PageError(401, "signin.oidc_failed")
        id_verifier = JwtVerifier(OidcKeySource(self.issuer), self.issuer, self.console.settings.client_id)
        _, claims = id_verifier.verify_claims(id_token, SubjectTokenError)
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise PageError(401, "signin.oidc_failed")
        subject = self.console.runtime.verifier.verify_subject(access)  # what the PDP will check
        if subject.id != claims["sub"]:
            raise PageError(401, "signin.oidc_failed")
        name = claims.get("name") or claims.get("preferred_username") or subject.id
        exp = float(token.get("expires_at") or time.time() + 300)
        return Session(subject=subject.id, name=str(name)[:128], roles=tuple(subject.roles),
                       org_unit=subject.org_unit, token=access, token_expires=exp, mode="oidc",
                       auth_method=subject.auth_method, id_token=id_token)

    def logout_url(self, session: Session, after: str) -> str | None:
        """OpenID Connect RP-Initiated Logout: where to send the browser so the IdP ends its session
        too (None when the IdP does not offer it: then only the console's session ends)."""
        try:
            endpoint = self.metadata().get("end_session_endpoint")
        except (httpx.HTTPError, ValueError):
            return None
        if not endpoint or not session.id_token:
            return None
        query = urlencode({"id_token_hint": session.id_token, "client_id": self.console.settings.client_id,
                           "post_logout_redirect_uri": after})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def add_routes(router: APIRouter, console: Console) -> None:
    oidc = Oidc(console) if console.runtime.settings.idp_issuer else None

    def redirect_uri(request: Request) -> str:
        base = console.settings.public_url or str(request.base_url)
        return base.rstrip("/") + CALLBACK

    @router.get("/signin")
    def signin(request: Request) -> Response:
        ctx = console.ctx(request)
        dev = oidc is None and console.runtime.settings.dev_signin_enabled
        staff, from_directory = load_directory(console.runtime.home) if dev else ([], False)
        login_csrf = secrets.token_urlsafe(24)
        response = console.render(ctx, "signin.html.j2", staff=staff, from_directory=from_directory,
                                  oidc=oidc is not None, login_csrf=login_csrf,
                                  expired=request.query_params.get("expired") == "1")
        response.set_cookie(LOGIN_COOKIE, login_csrf, path=PREFIX, httponly=True, samesite="strict",
                            secure=console.secure(request), max_age=1800)
        return response

    @router.post("/signin/dev")
    async def signin_dev(request: Request) -> Response:
        ctx = console.ctx(request)
        if oidc is not None or console.runtime.issuer is None or not console.runtime.settings.dev_signin_enabled:
            return console.error(ctx, 404, "signin.dev_disabled")
        form = await console.form(request)
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not secrets.compare_digest(cookie, form.get("csrf", "")):
            return console.error(ctx, 403, "error.csrf")
        staff, _ = await run_in_threadpool(load_directory, console.runtime.home)
        member = next((m for m in staff if m.id == form.get("staff")), None)
        if member is None:
            return console.error(ctx, 400, "signin.unknown_staff")
        token, expires = mint(console, member.id, member.roles, member.office, member.auth_method)
        session = Session(subject=member.id, name=member.name, roles=member.roles, org_unit=member.office,
                          token=token, token_expires=expires, mode="dev", auth_method=member.auth_method)
        return console.start_session(ctx, session, console.redirect(ctx, f"{PREFIX}/"))

    @router.get("/signin/oidc")
    def signin_oidc(request: Request) -> Response:
        ctx = console.ctx(request)
        if oidc is None:
            return console.error(ctx, 404, "signin.oidc_disabled")
        raw, pending = console.sessions.begin_login()
        try:
            url = oidc.authorize_url(redirect_uri(request), pending.state, pending.verifier, pending.nonce)
        except (httpx.HTTPError, ValueError, KeyError):
            return console.error(ctx, 502, "signin.idp_unavailable")
        response = console.finish(ctx, RedirectResponse(url, status_code=303))
        # Lax, not Strict: the IdP's redirect back is a cross-site navigation that must carry it.
        response.set_cookie(OIDC_COOKIE, raw, path=CALLBACK, httponly=True, samesite="lax",
                            secure=console.secure(request), max_age=600)
        return response

    @router.get("/oidc/callback")
    def oidc_callback(request: Request) -> Response:
        ctx = console.ctx(request)
        if oidc is None:
            return console.error(ctx, 404, "signin.oidc_disabled")
        q = request.query_params
        pending = console.sessions.finish_login(request.cookies.get(OIDC_COOKIE), q.get("state"))
        if pending is None or not q.get("code") or q.get("error"):
            return console.error(ctx, 401, "signin.oidc_failed")
        try:
            session = oidc.exchange(redirect_uri(request), q["code"], pending.verifier, pending.nonce)
        except (TokenError, httpx.HTTPError, ValueError, KeyError):
            return console.error(ctx, 401, "signin.oidc_failed")
        except Exception as exc:  # authlib's OAuth errors: a refused code is a failed sign-in
            if type(exc).__module__.startswith("authlib"):
                return console.error(ctx, 401, "signin.oidc_failed")
            raise
        # A same-site page finishes the sign-in: a Strict cookie set during a cross-site redirect
        # chain would not be sent on the very next hop.
        response = console.render(ctx, "signed_in.html.j2")
        response.delete_cookie(OIDC_COOKIE, path=CALLBACK)
        return console.start_session(ctx, session, response)

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        ctx = console.ctx(request)
        form = await console.form(request)
        session = ctx.session
        if session is not None:
            console.check_csrf(ctx, form)
        at_idp = None
        if oidc is not None and session is not None and session.mode == "oidc":
            after = (console.settings.public_url or str(request.base_url)).rstrip("/") + f"{PREFIX}/signin"
            at_idp = await run_in_threadpool(oidc.logout_url, session, after)
        if at_idp:  # the IdP's session ends too, then it sends the browser back to the sign-in page
            return console.end_session(ctx, console.render(ctx, "signing_out.html.j2", url=at_idp))
        return console.end_session(ctx, console.redirect(ctx, f"{PREFIX}/signin"))
