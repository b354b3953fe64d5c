"""Mounting the console on the ztcp FastAPI app: routes under /console, static assets, security
headers, and HTML error pages for the console's own exceptions."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console import audit_pages, auth, guard, key_pages, log_pages, policy_pages, soc_pages
from console.config import ConsoleSettings
from console.i18n import COOKIE as LANG_COOKIE
from console.i18n import LOCALES
from console.web import PREFIX, STATIC, Console, PageError, Redirect
from pdp.errors import StoreUnavailable
from provenance import LedgerUnavailable
from siem_rules.errors import AlertStoreUnavailable

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class ConsoleHeaders:
    """Security and cache headers on console responses, as plain ASGI.

    Not ``@app.middleware("http")``: that wraps *every* request of the app (the PDP's
    ``/v1/decisions`` included) in a streaming task; this only touches console paths.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/" or path.startswith(PREFIX)):
            await self.app(scope, receive, send)
            return
        static = path.startswith(f"{PREFIX}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in HEADERS.items():
                    headers.setdefault(k, v)
                if static:
                    headers["Cache-Control"] = "public, max-age=3600"
                else:  # every console page may show who looked at whose data: never cached
                    headers["Cache-Control"] = "no-store"
                    headers["Pragma"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_console(app: FastAPI, runtime, settings: ConsoleSettings | None = None) -> Console:  # noqa: ANN001
    """Add the console to ``app`` (``/console/…``, and ``/`` redirects there)."""
    console = Console(runtime, settings or ConsoleSettings())
    app.state.console = console
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/")
    def home(request: Request) -> Response:
        ctx = console.ctx(request)
        if ctx.session is None:
            return console.redirect(ctx, f"{PREFIX}/signin")
        return console.render(ctx, "home.html.j2")

    @router.get("/lang")
    def language(request: Request) -> Response:
        ctx = console.ctx(request)
        chosen = request.query_params.get("set", "")
        back = request.query_params.get("next", f"{PREFIX}/")
        if not back.startswith(f"{PREFIX}/") or "//" in back or "\\" in back:  # never an open redirect
            back = f"{PREFIX}/"
        response = console.redirect(ctx, back)
        if chosen in LOCALES:
            response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, path=PREFIX, samesite="strict",
                                httponly=True, secure=console.secure(request))
        return response

    auth.add_routes(router, console)
    audit_pages.add_routes(router, console)
    soc_pages.add_routes(router, console)
    policy_pages.add_routes(router, console)
    key_pages.add_routes(router, console)
    log_pages.add_routes(router, console)

    @router.get("/{rest:path}")
    def not_found(request: Request, rest: str) -> Response:  # an HTML page, not problem+json, for people
        return console.error(console.ctx(request), 404, "error.not_found")

    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")  # before the catch-all
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.exception_handler(Redirect)
    async def _redirect(request: Request, exc: Redirect) -> Response:
        return console.redirect(console.ctx(request), exc.url)

    @app.exception_handler(guard.Refused)
    async def _refused(request: Request, exc: guard.Refused) -> Response:
        return console.refused(console.ctx(request), exc)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        return console.error(console.ctx(request), exc.status, exc.key, **exc.values)

    @app.exception_handler(LedgerUnavailable)
    async def _unrecordable(request: Request, exc: LedgerUnavailable) -> Response:
        if not request.url.path.startswith(PREFIX):
            raise exc
        return console.error(console.ctx(request), 503, "audit.unrecordable")

    @app.exception_handler(AlertStoreUnavailable)
    async def _alerts_unavailable(request: Request, exc: AlertStoreUnavailable) -> Response:
        # The shared alert store does not answer: a 503 the analyst can retry, never a 500.
        if not request.url.path.startswith(PREFIX):
            raise exc
        response = console.error(console.ctx(request), 503, "alerts.unavailable")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(StoreUnavailable)
    async def _sessions_unavailable(request: Request, exc: StoreUnavailable) -> Response:
        # The session store (or another shared store) does not answer: nobody can be recognised, so
        # nothing is shown; a plain page, since rendering one would ask the session store again.
        if not request.url.path.startswith(PREFIX):
            raise exc
        return HTMLResponse("<!doctype html><title>503</title><p>The console is unavailable for a moment "
                            "(its database does not answer). Try again shortly.</p>", status_code=503,
                            headers={"Retry-After": "5", "Cache-Control": "no-store"})

    app.add_middleware(ConsoleHeaders)
    return console
