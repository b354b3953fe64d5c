"""RFC 9457 problem details: the one error shape of every ztcp HTTP endpoint.

Handlers turn validation errors into 422 naming each field at fault, HTTP errors into their status,
and anything unexpected into a bare 500 problem without a traceback (the details go to the server
log under an error id the caller can quote).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("ztcp.http")


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", *, type_: str = "about:blank",
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, title: str, detail: str = "", *, type_: str = "about:blank",
                     headers: dict[str, str] | None = None, instance: str | None = None,
                     **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _line_column(doc: object, pos: int) -> tuple[int, int]:
    """1-based line and column of character offset ``pos`` in the request body (as json.JSONDecodeError counts)."""
    text = doc.decode("utf-8", "replace") if isinstance(doc, bytes | bytearray) else doc
    if not isinstance(text, str):
        return 1, pos + 1
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _malformed_json(exc: RequestValidationError) -> dict[str, str] | None:
    """FastAPI reports a body that is not JSON as an error at ``("body", <character offset>)``, which
    would read as "field 33": say instead where the JSON breaks (line and column, and what the parser
    expected), never quoting the body."""
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            loc = err.get("loc", ())
            pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            line, column = _line_column(getattr(exc, "body", None), pos)
            why = str((err.get("ctx") or {}).get("error") or "invalid JSON")
            return {"field": "body", "message": f"malformed JSON at line {line}, column {column}: {why}"}
    return None


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        # Never echo the offending value: it may be a token or personal data.
        errors.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, type_=exc.type, headers=exc.headers,
                                instance=request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = _malformed_json(exc)
        if malformed is not None:
            return problem_response(422, "Malformed JSON", malformed["message"],
                                    instance=request.url.path, errors=[malformed])
        errors = _field_errors(exc)
        fields = ", ".join(e["field"] for e in errors[:5])
        return problem_response(422, "Invalid request", f"invalid field(s): {fields}",
                                instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else ""
        title = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
                 405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
                 415: "Unsupported media type", 429: "Too many requests"}.get(exc.status_code, "Error")
        return problem_response(exc.status_code, title, detail, headers=getattr(exc, "headers", None),
                                instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = str(uuid.uuid4())
        log.error("unhandled error %s on %s %s: %s", error_id, request.method, request.url.path,
                  type(exc).__name__, exc_info=exc)
        return problem_response(500, "Internal error", f"error id {error_id}", instance=request.url.path)
