"""HTTP API for provenance (docs/design.md, Interfaces), mounted by the composition root.

``auth`` supplies two FastAPI-dependency factories: ``require_scope(scope)`` for calling systems
(returns an identity with ``.sub`` and ``.scopes``) and ``require_subject()`` for end users (``.sub``,
``.type``, ``.roles``, ``.citizen_ref``); both raise 401/403 themselves. Errors here are RFC 9457
``application/problem+json``; malformed input is a 422 naming the field, never echoing its value.
Reading a citizen's events is itself recorded (``audit.read``) naming the caller.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.national_id import CITIZEN_REF_PATTERN
from contracts.provenance_event import Actor, ProvenanceEvent
from provenance.accesses import StaffVisible, citizen_accesses
from provenance.errors import LedgerUnavailable, ProvenanceError, UnknownEntry
from provenance.ledger import Ledger
from provenance.recorder import Recorder
from provenance.trace import trace_citizen

MAX_BATCH = 1000
_CITIZEN_REF = re.compile(CITIZEN_REF_PATTERN)
PROBLEM = "application/problem+json"
WRITE_SCOPE = "provenance:write"
WRITE_WINDOW_SECONDS = 300  # a writer records what happened now, not last month
READ_SCOPE = "provenance:read"


class Auth(Protocol):
    def require_scope(self, scope: str) -> Callable[..., Any]: ...
    def require_subject(self) -> Callable[..., Any]: ...


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    events: list[ProvenanceEvent] = Field(min_length=1, max_length=MAX_BATCH)


def problem(status: int, title: str, detail: str, **ext: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **ext}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _invalid(exc: ValidationError, prefix: str = "") -> JSONResponse:
    errors = []
    for e in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(str(p) for p in e["loc"])
        errors.append({"field": f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(body)", "message": e["msg"]})
    first = errors[0]["field"] if errors else "(body)"
    return problem(422, "Invalid request", f"invalid field {first}", errors=errors)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _int_param(name: str, raw: str | None, *, required: bool) -> int | JSONResponse | None:
    if raw is None or raw == "":
        if required:
            return problem(
                422,
                "Invalid request",
                f"query parameter {name} is required",
                errors=[{"field": name, "message": "required"}],
            )
        return None
    if not raw.isdigit() or len(raw) > 18:
        return problem(
            422,
            "Invalid request",
            f"query parameter {name} must be a non-negative integer",
            errors=[{"field": name, "message": "must be a non-negative integer"}],
        )
    return int(raw)


def _int_params(
    request: Request, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[list[int], list[int | None]] | JSONResponse:
    """The named query parameters as integers, (required, optional) (a missing optional one is None),
    or the problem naming the first that is missing or malformed."""
    values: list[int] = []
    for name in required:
        value = _int_param(name, request.query_params.get(name), required=True)
        if isinstance(value, JSONResponse):
            return value
        values.append(value if value is not None else 0)  # (never None: a missing one is a problem)
    extra: list[int | None] = []
    for name in optional:
        maybe = _int_param(name, request.query_params.get(name), required=False)
        if isinstance(maybe, JSONResponse):
            return maybe
        extra.append(maybe)
    return values, extra


def _bound_to_caller(events: list[ProvenanceEvent], client_id: str, now: float,
                     window: int) -> tuple[list[ProvenanceEvent], JSONResponse | None]:
    """A writing system records its own accesses, now: ``via.system`` is its client id (stamped when
    absent, refused when another), the time is within ``window`` seconds of now, and ``audit.*``
    events (ztcp's own record of auditors' queries) cannot be written from outside."""
    out = []
    for i, event in enumerate(events):
        if event.type.startswith("audit."):
            return [], problem(403, "Forbidden", "audit.* events are recorded by ztcp itself",
                               errors=[{"field": f"events.{i}.type", "message": "not writable by callers"}])
        if event.via.system is not None and event.via.system != client_id:
            return [], problem(403, "Forbidden", f"events.{i}.via.system must be your own client id",
                               errors=[{"field": f"events.{i}.via.system", "message": "another system"}])
        if abs(event.time.timestamp() - now) > window:
            return [], problem(422, "Invalid request", f"events.{i}.time is more than {window} s from now",
                               errors=[{"field": f"events.{i}.time", "message": f"within {window} s of now"}])
        out.append(event if event.via.system is not None
                   else event.model_copy(update={"via": event.via.model_copy(update={"system": client_id})}))
    return out, None


def create_router(
    ledger: Ledger,
    recorder: Recorder,
    auth: Auth,
    *,
    sealed_cases: Callable[[], Collection[str]] = lambda: (),
    show_staff: StaffVisible | None = None,
    clock: Callable[[], float] = time.time,
    write_window_seconds: int = WRITE_WINDOW_SECONDS,
) -> APIRouter:
    router = APIRouter(tags=["provenance"])
    writer = Depends(auth.require_scope(WRITE_SCOPE))
    reader = Depends(auth.require_scope(READ_SCOPE))
    subject = Depends(auth.require_subject())

    @router.post("/v1/provenance/events", summary="Record up to 1000 provenance events durably")
    async def post_events(request: Request, caller: Any = writer) -> Response:
        raw = await request.body()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return problem(
                422,
                "Invalid request",
                "body is not valid JSON",
                errors=[{"field": "(body)", "message": "invalid JSON"}],
            )
        if isinstance(data, dict) and isinstance(data.get("events"), list) and len(data["events"]) > MAX_BATCH:
            return problem(
                413,
                "Batch too large",
                f"at most {MAX_BATCH} events per request",
                errors=[{"field": "events", "message": f"at most {MAX_BATCH} events"}],
            )
        try:
            batch = EventBatch.model_validate_json(raw)
        except ValidationError as exc:
            return _invalid(exc)
        events, refused = _bound_to_caller(batch.events, caller.client_id, clock(), write_window_seconds)
        if refused is not None:
            return refused
        try:
            receipts = recorder.record_many(events)
        except LedgerUnavailable as exc:
            return problem(503, "Ledger unavailable", str(exc))
        return JSONResponse(
            {
                "receipts": [
                    {"event_id": r.event_id, "seq": r.seq, "leaf_hash": _b64(r.leaf_hash), "duplicate": r.duplicate}
                    for r in receipts
                ]
            }
        )

    @router.get("/v1/provenance/citizens/{citizen_ref}/events", summary="A citizen's events with inclusion proofs")
    def citizen_events(citizen_ref: str, caller: Any = reader) -> Response:
        if not _CITIZEN_REF.fullmatch(citizen_ref):
            return problem(
                422,
                "Invalid request",
                "citizen_ref is not a citizen reference (cr_…)",
                errors=[{"field": "citizen_ref", "message": "must match cr_ + 52 base32 characters"}],
            )
        try:
            recorder.record(
                ProvenanceEvent(
                    type="audit.read",
                    actor=Actor(id=caller.sub, type="service"),
                    citizen_ref=citizen_ref,
                    query="GET citizen events",
                )
            )
        except LedgerUnavailable as exc:  # an unrecorded audit query is not served
            return problem(503, "Ledger unavailable", str(exc))
        try:
            tr = trace_citizen(ledger, citizen_ref, auditor=caller.sub)
        except ProvenanceError as exc:
            return problem(409 if exc.exit_code == 3 else 400, "Ledger integrity problem", str(exc))
        cp = tr.checkpoint
        return JSONResponse(
            {
                "citizen_ref": citizen_ref,
                "checkpoint": {"size": cp.size, "root": _b64(cp.root), "note": cp.note} if cp else None,
                "events": [
                    {
                        "seq": t.seq,
                        "leaf_hash": _b64(t.leaf_hash),
                        "proof_status": t.status,
                        "event": t.event.model_dump(mode="json", exclude_none=True),
                    }
                    for t in tr.events
                ],
                "lineage": [
                    {
                        "disclosure": li.disclosure_id,
                        "derived_from": li.source_id,
                        "source_seq": li.source_seq,
                        "recipient": li.recipient,
                    }
                    for li in tr.lineage
                ],
            }
        )

    @router.get("/v1/provenance/checkpoint", summary="The latest signed checkpoint (C2SP tlog-checkpoint)")
    def get_checkpoint(caller: Any = reader) -> Response:
        cp = ledger.latest_checkpoint()
        if cp is None:
            return problem(404, "No checkpoint", "the ledger has no signed checkpoint yet")
        return JSONResponse(
            {
                "origin": cp.checkpoint.origin,
                "size": cp.size,
                "root": _b64(cp.root),
                "note": cp.note,
                "time": cp.time.isoformat(),
            }
        )

    @router.get("/v1/provenance/proofs/inclusion", summary="RFC 9162 inclusion proof")
    def inclusion(request: Request, caller: Any = reader) -> Response:
        params = _int_params(request, ("seq",), ("size",))
        if isinstance(params, JSONResponse):
            return params
        (seq,), (size,) = params
        if size is None:
            cp = ledger.latest_checkpoint()
            size = cp.size if cp else ledger.size
        try:
            proof = ledger.inclusion_proof(seq, size)
            entry = ledger.get(seq)
            root = ledger.root(size)
        except UnknownEntry as exc:
            return problem(404, "Not found", str(exc))
        return JSONResponse(
            {
                "seq": seq,
                "size": size,
                "leaf_hash": _b64(entry.leaf_hash),
                "proof": [_b64(h) for h in proof],
                "root": _b64(root),
            }
        )

    @router.get("/v1/provenance/proofs/consistency", summary="RFC 9162 consistency proof")
    def consistency(request: Request, caller: Any = reader) -> Response:
        params = _int_params(request, ("from", "to"))
        if isinstance(params, JSONResponse):
            return params
        (first, second), _ = params
        if first > second:
            return problem(
                422,
                "Invalid request",
                "from must not exceed to",
                errors=[{"field": "from", "message": "must be <= to"}],
            )
        try:
            proof = ledger.consistency_proof(first, second)
            r1, r2 = ledger.root(first), ledger.root(second)
        except UnknownEntry as exc:
            return problem(404, "Not found", str(exc))
        return JSONResponse(
            {"from": first, "to": second, "proof": [_b64(h) for h in proof], "root1": _b64(r1), "root2": _b64(r2)}
        )

    @router.get("/v1/citizens/me/accesses", summary="Who accessed my data, when and why (citizen token)")
    def my_accesses(ident: Any = subject) -> Response:
        ref = getattr(ident, "citizen_ref", None)
        if getattr(ident, "type", None) != "citizen" or not ref:
            return problem(403, "Forbidden", "this view needs a citizen's own token")
        if show_staff is None:
            items = citizen_accesses(ledger, ref, sealed_cases=sealed_cases)
        else:
            items = citizen_accesses(ledger, ref, sealed_cases=sealed_cases, show_staff=show_staff)
        return JSONResponse({"accesses": [a.model_dump(mode="json") for a in items]})

    return router
