"""HTTP API of the decision point: ``/v1/decisions`` and friends (docs/design.md, Interfaces)."""

import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from contracts.decision import Decision, DecisionRequest
from pdp.errors import TokenError
from pdp.http_auth import BearerAuth
from pdp.identity import CallerIdentity
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


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class FastDecide:
    """``POST /v1/decisions`` answered directly for the request that is in order, FastAPI for the rest.

    It is the route's request handler (FastAPI ≥ 0.16x builds an included route's ASGI app from
    ``get_route_handler()`` per inclusion and never calls ``route.app``, so that is where it sits).
    A well-formed call — a JSON body that validates as :class:`DecisionRequest`, a caller token with
    ``pdp:decide`` — is answered here: ``orjson``, the caller from the verifier's cache, one
    validation, the decision, one serialisation. FastAPI's generic handler (stdlib JSON, dependency
    resolution, response-model validation of our own output) cost as much as the decision around
    the engine. Anything else — no or a bad token, another content type, JSON that does not parse or
    validate — goes to FastAPI's own handler for the route, which reads the body cached on the
    request, so every refusal (401, 403, 422 problem+json naming the field) is the one the OpenAPI
    schema and the error handlers already define.
    """

    def __init__(self, generic: Handler, point: DecisionPoint, auth: BearerAuth, scope: str) -> None:
        self.generic = generic
        self.point = point
        self.verifier = auth.verifier
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
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            caller = self.verifier.verify_caller(token.strip())
        except TokenError:
            return None
        return caller if caller.has_scope(self.scope) else None

    async def handle(self, request: Request) -> Response:
        caller = self._caller(request.scope["headers"])
        body = await request.body()
        decision_request = None
        if caller is not None and body:
            try:
                decision_request = DecisionRequest.model_validate(orjson.loads(body))
            except (orjson.JSONDecodeError, ValidationError):
                decision_request = None
        if caller is None or decision_request is None:
            return await self.generic(request)
        # Called inline: a decision is a few hundred µs of CPU under the GIL, and a hung engine is
        # cut off by the engine guard's own deadline.
        decision = self.point.decide(decision_request, caller=caller.client_id)
        if unavailable(decision):  # the log or the signals' store is down: 503, never a 200 deny
            return Response(_unavailable_body(decision), status_code=503, media_type=PROBLEM_JSON,
                            headers={"Retry-After": RETRY_AFTER})
        return Response(decision.__pydantic_serializer__.to_json(decision), media_type="application/json")


def create_router(point: DecisionPoint, auth: BearerAuth) -> APIRouter:
    router = APIRouter(tags=["decisions"])
    decide_scope = auth.require_scope(SCOPE_DECIDE)
    audit_scope = auth.require_scope(SCOPE_AUDIT)

    class DecideRoute(APIRoute):
        # The fast path sits in the handler: FastAPI builds an included route's app from
        # get_route_handler() (per inclusion) and does not call route.app (see FastDecide).
        def get_route_handler(self) -> Handler:
            return FastDecide(super().get_route_handler(), point, auth, SCOPE_DECIDE).handle

    async def decide(request: DecisionRequest,
                     caller: CallerIdentity = Depends(decide_scope)) -> Response:
        # FastAPI runs this only for calls FastDecide hands over; a refusal has been raised by then,
        # so this is reached for nothing but an answer as the fast path would give it.
        decision = point.decide(request, caller=caller.client_id)
        if unavailable(decision):
            raise _unavailable(decision)
        return _json(decision)

    router.add_api_route("/v1/decisions", decide, methods=["POST"], response_model=Decision,
                         responses={**_ERRORS, **_UNAVAILABLE},
                         summary="Decide one access request", route_class_override=DecideRoute)

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
