"""The console's request plumbing: sessions and cookies, locale, CSRF, forms, PDP checks, rendering."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from console import guard
from console.config import ConsoleSettings
from console.i18n import COOKIE as LANG_COOKIE
from console.i18n import LOCALES, Catalog, negotiate
from console.sessions import Session, SessionStore, SessionStoreLike

PREFIX = "/console"
SESSION_COOKIE = "ztcp_console_session"
DEVICE_COOKIE = "ztcp_console_device"
LOGIN_COOKIE = "ztcp_console_login"
MAX_FORM_BYTES = 64 * 1024
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


class Redirect(Exception):  # noqa: N818 - control flow for "go and sign in"
    def __init__(self, url: str) -> None:
        self.url = url


class PageError(Exception):
    """Show an error page (400/404/409/413/…) with a catalog message; never a stack trace."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        self.status = status
        self.key = key
        self.values = values


@dataclass
class Ctx:
    request: Request
    t: Catalog
    session: Session | None
    device_id: str
    new_device: bool


def session_store(database_url: str | None, settings: ConsoleSettings) -> SessionStoreLike:
    """Sessions in memory (one process), or in the cluster's database (``ZTCP_DATABASE_URL``)."""
    idle, absolute = settings.idle_minutes * 60, settings.absolute_hours * 3600
    if database_url:
        from console.pg_sessions import PostgresSessionStore

        return PostgresSessionStore(database_url, idle, absolute, settings.max_sessions)
    return SessionStore(idle, absolute, settings.max_sessions)


class Console:
    def __init__(self, runtime: Any, settings: ConsoleSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.sessions = session_store(runtime.settings.database_url, settings)
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2", "html"]),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        # Times are shown in the bureau's zone (settings.timezone), named in the column headers.
        self.tz = ZoneInfo(runtime.settings.timezone)
        self.env.filters["localtime"] = self.localtime
        self.env.globals["tz_name"] = runtime.settings.timezone

    def localtime(self, value: Any, seconds: bool = True) -> str:
        """A datetime, an RFC 3339 string or epoch seconds, in the bureau's zone; other values as given."""
        when: datetime | None = None
        if isinstance(value, datetime):
            when = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            when = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str) and value:
            try:
                when = datetime.fromisoformat(value.strip())
            except ValueError:
                return value
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)  # the stores write UTC
        if when is None:
            return "" if value is None else str(value)
        return when.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    # -- context -------------------------------------------------------------------------------
    def ctx(self, request: Request) -> Ctx:
        locale = negotiate(request.headers.get("accept-language"), request.cookies.get(LANG_COOKIE))
        device = request.cookies.get(DEVICE_COOKIE) or ""
        new_device = not (16 <= len(device) <= 64 and device.replace("-", "").replace("_", "").isalnum())
        if new_device:
            device = secrets.token_urlsafe(18)
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        return Ctx(request, Catalog(locale), session, device, new_device)

    @property
    def managed_devices(self) -> bool:
        if self.settings.managed_devices is not None:
            return self.settings.managed_devices
        return self.runtime.settings.dev_signin_enabled

    def secure(self, request: Request) -> bool:
        return request.url.scheme == "https"

    def client_ip(self, request: Request) -> str | None:
        return request.client.host if request.client else None

    # -- rendering -----------------------------------------------------------------------------
    def render(self, ctx: Ctx, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        s = ctx.session
        body = self.env.get_template(template).render(
            t=ctx.t, lang=ctx.t.locale, locales=LOCALES, session=s, csrf=s.csrf if s else "",
            prefix=PREFIX, path=ctx.request.url.path, dev_issuer=self.runtime.settings.dev_signin_enabled, **values)
        response = HTMLResponse(body, status_code=status)
        self.finish(ctx, response)
        return response

    def finish(self, ctx: Ctx, response: Response) -> Response:
        if ctx.new_device:
            response.set_cookie(DEVICE_COOKIE, ctx.device_id, max_age=365 * 86400, path=PREFIX, httponly=True,
                                samesite="strict", secure=self.secure(ctx.request))
        return response

    def redirect(self, ctx: Ctx, url: str) -> Response:
        return self.finish(ctx, RedirectResponse(url, status_code=303))

    def error(self, ctx: Ctx, status: int, key: str, **values: object) -> HTMLResponse:
        return self.render(ctx, "error.html.j2", status=status, message=ctx.t(key, **values), reasons=[],
                           decision=None)

    def refused(self, ctx: Ctx, exc: guard.Refused) -> HTMLResponse:
        return self.render(ctx, "error.html.j2", status=403, message=ctx.t("forbidden.message"),
                           reasons=exc.reasons, decision=exc.decision)

    # -- sessions --------------------------------------------------------------------------------
    def start_session(self, ctx: Ctx, session: Session, response: Response) -> Response:
        self.sessions.drop(ctx.request.cookies.get(SESSION_COOKIE))  # a new id at every sign-in
        raw = self.sessions.create(session)
        response.set_cookie(SESSION_COOKIE, raw, path=PREFIX, httponly=True, samesite="strict",
                            secure=self.secure(ctx.request))
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    def end_session(self, ctx: Ctx, response: Response) -> Response:
        self.sessions.drop(ctx.request.cookies.get(SESSION_COOKIE))
        response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict",
                               secure=self.secure(ctx.request))
        return response

    def fresh_token(self, session: Session) -> str:
        """The session's subject token, re-minted by the dev issuer shortly before it expires.

        An IdP token is never extended here: once it expires the user signs in again."""
        if time.time() < session.token_expires - 60:
            return session.token
        if session.mode == "dev" and self.runtime.issuer is not None and self.runtime.settings.dev_signin_enabled:
            from console.auth import mint
            from console.directory import load_directory

            # The directory is re-read: someone removed from it (or from a role) loses it here.
            staff, _ = load_directory(self.runtime.home)
            member = next((m for m in staff if m.id == session.subject), None)
            if member is None:
                raise Redirect(f"{PREFIX}/signin?expired=1")
            session.roles, session.org_unit = member.roles, member.office
            session.token, session.token_expires = mint(self, member.id, member.roles, member.office,
                                                        member.auth_method)
            self.sessions.save(session)  # every replica serves the renewed session
            return session.token
        raise Redirect(f"{PREFIX}/signin?expired=1")

    # -- authorisation -----------------------------------------------------------------------------
    def require(self, ctx: Ctx, page: guard.Page, *, citizen_ref: str | None = None,
                record_id: str | None = None) -> Session:
        """The signed-in user, permitted by the PDP for ``page``; else Redirect / Refused."""
        s = ctx.session
        if s is None:
            raise Redirect(f"{PREFIX}/signin")
        guard.authorize(self.runtime.point, self.fresh_token(s), page, device_id=ctx.device_id,
                        managed=self.managed_devices, ip=self.client_ip(ctx.request),
                        citizen_ref=citizen_ref, record_id=record_id)
        return s

    def shows(self, ctx: Ctx, page: guard.Page) -> bool:
        """Whether to draw the button for ``page`` (display only; see guard.BUTTON_ROLES)."""
        return ctx.session is not None and guard.shows_button(ctx.session.roles, page)

    # -- forms -----------------------------------------------------------------------------------
    async def form(self, request: Request) -> dict[str, str]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise PageError(415, "error.form_type")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise PageError(413, "error.form_size")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise PageError(400, "error.form_malformed") from None
        return {k: v[0].strip() for k, v in parsed.items() if v}

    def check_csrf(self, ctx: Ctx, form: dict[str, str]) -> Session:
        s = ctx.session
        if s is None:
            raise Redirect(f"{PREFIX}/signin")
        if not s.csrf_ok(form.get("csrf")):
            raise PageError(403, "error.csrf")
        return s
