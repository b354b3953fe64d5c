"""HTTP API of the decision point: ``/v1/decisions`` and friends (docs/design.md, Interfaces)."""

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.decision import Decision, DecisionRequest
from pdp.errors import TokenError
from pdp.http_auth import BearerAuth, bearer_token
from pdp.identity import CallerIdentity, JwtVerifier
from pdp.models import BatchRequest, BatchResponse
from pdp.point import DecisionPoint, unavailable
from pdp.problems import PROBLEM_JSON, Problem

SCOPE_DECIDE = "pdp:decide"
SCOPE_AUDIT = "pdp:audit"

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "missing or invalid caller token"},
           403: {"description": "caller lacks the scope"},
           422: {"description": "malformed request (problem+json naming the field)"}}
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {
    "description": "the decision log or signal history is unavailable (its database is down): nothing decided, "
                   "no token; retry after Retry-After seconds"}}
RETRY_AFTER = "2"


def _unavailable_body(decision: Decision) -> bytes:
    """The 503 problem for a decision the PDP could not log or vouch for (its id and reasons only)."""
    return orjson.dumps({"type": "urn:ztcp:problem:pdp-unavailable", "title": "Decision point unavailable",
                         "status": 503, "detail": "the decision could not be logged or its signals vouched for",
                         "decision_id": decision.decision_id, "reasons": decision.reasons})


def _unavailable(decision: Decision) -> Problem:
    return Problem(503, "Decision point unavailable", "the decision could not be logged or its signals vouched for",
                   type_="urn:ztcp:problem:pdp-unavailable", headers={"Retry-After": RETRY_AFTER},
                   decision_id=decision.decision_id, reasons=decision.reasons)


class DecisionLane:
    """``POST /v1/decisions`` answered below the framework for the call that is in order (pure ASGI).

    A well-formed call — a caller token with ``pdp:decide``, a JSON body that validates as
    :class:`DecisionRequest` — is answered here: ``orjson``, the caller from the verifier's cache,
    one validation, the decision, one serialisation, two ASGI messages. Under FastAPI the same call
    crossed the exception and exit-stack middlewares, a walk of every route of the app and the
    route's send wrappers, which cost a sixth of the server's CPU per decision and bought nothing
    for an answer that is already validated. Anything else — another path or method, no or a bad
    token, another content type, JSON that does not parse or validate — goes on to the app with its
    body replayed, so every refusal (401, 403, 422 problem+json naming the field) is the one the
    OpenAPI schema and the error handlers define; an unexpected error still reaches the app's
    500 handler above. Mounted inside :class:`server.limits.BodyLimit`, which counts the body first.
    """

    def __init__(self, app: ASGIApp, point: DecisionPoint, verifier: JwtVerifier, path: str = "/v1/decisions",
                 scope: str = SCOPE_DECIDE) -> None:
        self.app = app
        self.point = point
        self.verifier = verifier
        self.path = path
        self.scope = scope

    def _caller(self, headers: list[tuple[bytes, bytes]]) -> CallerIdentity | None:
        authorization = content_type = b""
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
        kind = content_type.split(b";", 1)[0].strip().lower()
        if not (kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))):
            return None
        token = bearer_token(authorization.decode("latin-1"))
        if token is None:
            return None
        try:
            caller = self.verifier.verify_caller(token)
        except TokenError:
            return None
        return caller if caller.has_scope(self.scope) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        caller = self._caller(scope["headers"])
        if caller is None:  # the app refuses it, reading the body itself (or not at all)
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            decision_request = DecisionRequest.model_validate(orjson.loads(body)) if body else None
        except (orjson.JSONDecodeError, ValidationError):
            decision_request = None
        if decision_request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        # Inline on the event loop: a decision is a few hundred µs of CPU under the GIL, and a hung
        # engine is cut off by the engine guard's own deadline.
        decision = self.point.decide(decision_request, caller=caller.client_id)
        if unavailable(decision):  # the log or the signals' store is down: 503, never a 200 deny
            await _answer(send, 503, _unavailable_body(decision), PROBLEM_JSON.encode(),
                          (b"retry-after", RETRY_AFTER.encode()))
            return
        await _answer(send, 200, decision.__pydantic_serializer__.to_json(decision), b"application/json")


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app after the lane has read the body: the body once, then the client's own."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(send: Send, status: int, body: bytes, content_type: bytes, *extra: tuple[bytes, bytes]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*extra, (b"content-length", str(len(body)).encode()), (b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


def create_router(point: DecisionPoint, auth: BearerAuth) -> APIRouter:
    router = APIRouter(tags=["decisions"])
    decide_scope = auth.require_scope(SCOPE_DECIDE)
    audit_scope = auth.require_scope(SCOPE_AUDIT)

    async def decide(request: DecisionRequest,
                     caller: CallerIdentity = Depends(decide_scope)) -> Response:
        # Under ztcp serve, DecisionLane answers well-formed calls before they get here; FastAPI
        # keeps the route for the schema and for whatever the lane passes on (refusals are raised by
        # then), and answers as the lane would for an app mounted without it.
        decision = point.decide(request, caller=caller.client_id)
        if unavailable(decision):
            raise _unavailable(decision)
        return _json(decision)

    router.add_api_route("/v1/decisions", decide, methods=["POST"], response_model=Decision,
                         responses={**_ERRORS, **_UNAVAILABLE},
                         summary="Decide one access request")

    @router.post("/v1/decisions/batch", response_model=BatchResponse, responses={**_ERRORS, **_UNAVAILABLE},
                 summary="Decide up to 1000 requests in order")
    async def decide_batch(batch: BatchRequest,
                           caller: CallerIdentity = Depends(decide_scope)) -> Response:
        # Up to 1000 decisions: in the thread pool, so a large batch never stalls the event loop
        # (health checks, other callers' single decisions) for the ~0.3 s it takes.
        def decide_all() -> Response:
            decisions = [point.decide(r, caller=caller.client_id) for r in batch.requests]
            down = next((d for d in decisions if unavailable(d)), None)
            if down is not None:  # one that could not be logged: the batch is not answered, retry it whole
                raise _unavailable(down)
            return _json(BatchResponse(decisions=decisions))

        return await run_in_threadpool(decide_all)

    @router.get("/v1/decisions/{decision_id}", responses={**_ERRORS, 404: {"description": "unknown id"}},
                summary="A logged decision (auditor scope)")
    async def get_decision(decision_id: uuid.UUID,
                           caller: CallerIdentity = Depends(audit_scope)) -> dict[str, Any]:
        point.log.flush(timeout=2.0)
        entry = point.log.get(str(decision_id))
        if entry is None:
            raise Problem(404, "Not found", "no decision with that id")
        return entry

    return router


def _json(model: BaseModel) -> Response:
    return Response(model.__pydantic_serializer__.to_json(model), media_type="application/json")
