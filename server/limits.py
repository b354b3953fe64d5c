"""Request-body limit: refused with 413 before anything reads, parses or authenticates the body.

A declared ``Content-Length`` over the limit is refused at once; a chunked body is counted as it
arrives and refused the moment it crosses the limit, so a client cannot make the server buffer
100 MB before the bearer token is even looked at.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # a batch of 1000 decision requests is ~2 MB


class BodyTooLarge(BaseException):
    """Raised from ``receive``: a BaseException, because FastAPI turns any Exception met while reading
    the body into a 400 "error parsing the body", and this must reach :class:`BodyLimit` as itself."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _problem(send, 400, "Bad request", "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await _problem(send, 413, "Request body too large",
                                   f"the body may be at most {self.max_bytes} bytes")
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await _problem(send, 413, "Request body too large", f"the body may be at most {self.max_bytes} bytes")


async def _problem(send: Send, status: int, title: str, detail: str) -> None:
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
