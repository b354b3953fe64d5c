"""HTTP API of the decision point: ``/v1/decisions`` and friends (docs/design.md, Interfaces)."""

import uuid

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from contracts.decision import Decision, DecisionRequest
from pdp.http_auth import BearerAuth
from pdp.identity import CallerIdentity
from pdp.models import BatchRequest, BatchResponse
from pdp.point import DecisionPoint
from pdp.problems import Problem

SCOPE_DECIDE = "pdp:decide"
SCOPE_AUDIT = "pdp:audit"

_ERRORS = {401: {"description": "missing or invalid caller token"},
           403: {"description": "caller lacks the scope"},
           422: {"description": "malformed request (problem+json naming the field)"}}


def create_router(point: DecisionPoint, auth: BearerAuth) -> APIRouter:
    router = APIRouter(tags=["decisions"])
    decide_scope = auth.require_scope(SCOPE_DECIDE)
    audit_scope = auth.require_scope(SCOPE_AUDIT)

    @router.post("/v1/decisions", response_model=Decision, responses=_ERRORS,
                 summary="Decide one access request")
    async def decide(request: DecisionRequest,
                     caller: CallerIdentity = Depends(decide_scope)) -> Response:
        # Called inline: a decision is a few hundred µs of CPU under the GIL, and a hung engine is
        # cut off by the engine guard's own deadline. Serialised here, once: returning the model
        # would make FastAPI validate it again against response_model (which stays for the schema).
        return _json(point.decide(request, caller=caller.client_id))

    @router.post("/v1/decisions/batch", response_model=BatchResponse, responses=_ERRORS,
                 summary="Decide up to 1000 requests in order")
    async def decide_batch(batch: BatchRequest,
                           caller: CallerIdentity = Depends(decide_scope)) -> Response:
        # Up to 1000 decisions: in the thread pool, so a large batch never stalls the event loop
        # (health checks, other callers' single decisions) for the ~0.3 s it takes.
        def decide_all() -> Response:
            return _json(BatchResponse(decisions=[point.decide(r, caller=caller.client_id) for r in batch.requests]))

        return await run_in_threadpool(decide_all)

    @router.get("/v1/decisions/{decision_id}", responses={**_ERRORS, 404: {"description": "unknown id"}},
                summary="A logged decision (auditor scope)")
    async def get_decision(decision_id: uuid.UUID,
                           caller: CallerIdentity = Depends(audit_scope)) -> dict:
        point.log.flush(timeout=2.0)
        entry = point.log.get(str(decision_id))
        if entry is None:
            raise Problem(404, "Not found", "no decision with that id")
        return entry

    return router


def _json(model: BaseModel) -> Response:
    return Response(model.__pydantic_serializer__.to_json(model), media_type="application/json")
