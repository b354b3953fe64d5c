"""The gateway's HTTP routes: each turns a request into a :class:`gateway.Caller` and one
:class:`gateway.Gateway` call. The operations, their guarantees and their errors live there.

``GET  /v1/records/{dataset}/{record_id}?fields=a,b&purpose=CODE[&case_id=ID]``
    One record's fields. 200 with the (masked) values, the decision id, the obligations applied and
    the provenance event id; 401 + ``WWW-Authenticate: Bearer error="insufficient_user_authentication",
    acr_values="<method>"`` (RFC 9470) on step-up; 403 with the reasons on deny; 404 for an unknown
    dataset or record; 422 naming the field; 503 (and no plaintext) when the ledger cannot record.
``POST /v1/records/{dataset}/search``  body ``{"column": "national_id", "value": "...", "purpose": ...}``
    Exact lookup through the blind index, decided with action ``search`` and recorded as
    ``pii.search``. The national ID travels in the body, never in the URL (proxies log URLs).
``PATCH /v1/records/{dataset}/{record_id}``  body ``{"values": {"bank_account": "..."}, "purpose": {...}}``
    Changes fields of one record, decided with action ``update`` on exactly the fields changed. The
    ``pii.update`` event (fields = the names changed, never the values) is recorded *before* the
    write: a change the ledger cannot record is not made (503). The response never echoes a value.
``POST /v1/disclosures``
    Records that data left the agency (``pii.disclose``): recipient, legal basis or consent id,
    fields, and ``derived_from`` the read events it discloses. Decided with action ``disclose`` and
    the recipient, so the policy checks the agency's agreement or the MyData party's consent (fields
    outside it are withheld). The caller transmits the data over its channel, only the fields in the answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.routing import APIRoute

import pdp
from gateway.context import ContextResolver, documented_headers
from gateway.gateway import Caller, Gateway, parse_fields
from gateway.models import NAME_PATTERN, DisclosureRequest, PathName, SearchRequest, UpdateRequest
from pdp.http_auth import BearerAuth
from pdp.identity import SubjectIdentity
from pdp.problems import Problem

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing/invalid token, or step-up required (WWW-Authenticate names the method)"},
    403: {"description": "denied by policy (problem+json with reasons)"},
    404: {"description": "unknown dataset or record"},
    422: {"description": "bad input (problem+json naming the field)"},
    503: {"description": "the provenance ledger, key provider or decision point (its database) is unavailable: "
                        "no plaintext; retry after Retry-After seconds"},
}



def subject_dependency(verifier: Any, clock: Callable[[], float]) -> Callable[[Request], Any]:
    """The end user's token, checked against the runtime's clock (BearerAuth checks the wall clock)."""
    if clock is time.time:
        return BearerAuth(verifier).require_subject()

    async def dependency(request: Request) -> SubjectIdentity:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(401, "Unauthorized", "a Bearer token is required",
                          headers={"WWW-Authenticate": 'Bearer realm="ztcp"'})
        try:
            return verifier.verify_subject(value.strip(), now=clock())
        except pdp.TokenError as exc:
            raise Problem(401, "Unauthorized", f"token refused: {exc.reason}",
                          headers={"WWW-Authenticate": f'Bearer realm="ztcp", error="invalid_token", '
                                                       f'error_description="{exc.reason}"'}) from None

    return dependency


def bearer_value(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
# Reads in flight at once. Fewer threads than anyio's 40 fight less for the GIL (the event loop
# among them), while 8 still share each of the ledger's group commits: bench_gateway measured
# 308 req/s with 40, 382 with 8 and 413 with 4 at 32 connections (README, Gateway read over HTTP).
READ_THREADS = 8
_NAME = re.compile(NAME_PATTERN.removeprefix("^").removesuffix("$"))
_READ_PARAMS = {"fields": 4000, "purpose": 128, "case_id": 128}  # longest value each may have


class FastRead:
    """``GET /v1/records/{dataset}/{record_id}``: the read that is in order without FastAPI's generic handler.

    A read whose path, query and subject token pass the checks the route declares is answered
    here: the token verified (from the verifier's cache), the same endpoint body
    (:func:`parse_fields`, the context resolver, :meth:`Gateway.read`) in a thread of this route's
    own pool, one ``orjson`` serialisation. FastAPI's generic handler (dependency resolution for
    nine parameters, validation and encoding of our own dict) cost about as much as the decision.
    Anything else — HEAD, no or a bad token, a parameter that is missing, repeated, too long or
    off-pattern — goes to FastAPI's handler for the route, so every refusal (401, 422 naming the
    parameter) is the one the OpenAPI schema declares. What :meth:`Gateway.read` raises (403, 404,
    503 …) reaches the app's problem handlers as from the generic route. The pool's threads live as
    long as the process, so each compiles the policy once (anyio's idle workers exit after 10 s
    and the next ones compile it again).
    """

    def __init__(self, generic: Handler, gateway: Gateway, verifier: Any,
                 context: ContextResolver, pool: ThreadPoolExecutor) -> None:
        self.generic = generic
        self.gateway = gateway
        self.verifier = verifier
        self.context = context
        self.pool = pool

    def params(self, scope: Mapping[str, Any]) -> dict[str, str] | None:
        """The read's parameters, if each is as the route declares it (else None)."""
        path = scope.get("path_params") or {}
        if not all(isinstance(path.get(k), str) and 0 < len(path[k]) <= 128 and _NAME.fullmatch(path[k])
                   for k in ("dataset", "record_id")):
            return None
        out: dict[str, str] = {}
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            longest = _READ_PARAMS.get(key)
            if longest is None:
                continue  # FastAPI ignores parameters it does not declare
            if key in out or not 0 < len(value) <= longest or (key != "fields" and not _NAME.fullmatch(value)):
                return None
            out[key] = value
        return out if "fields" in out and "purpose" in out else None

    def subject(self, request: Request) -> SubjectIdentity | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            subject: SubjectIdentity = self.verifier.verify_subject(token.strip(), now=self.gateway.clock())
        except pdp.TokenError:
            return None
        return subject

    def _read(self, request: Request, subject: SubjectIdentity, params: dict[str, str]) -> bytes:
        names = parse_fields(params["fields"])
        device, ctx = self.context.resolve(request)
        caller = Caller(subject=subject, token=bearer_value(request), device=device, context=ctx)
        path = request.scope["path_params"]
        return orjson.dumps(self.gateway.read(caller, path["dataset"], path["record_id"], names,
                                              params["purpose"], params.get("case_id")))

    async def __call__(self, request: Request) -> Response:
        params = self.params(request.scope) if request.scope.get("method") == "GET" else None
        subject = self.subject(request) if params is not None else None
        if params is None or subject is None:
            return await self.generic(request)
        body = await asyncio.get_running_loop().run_in_executor(self.pool, self._read, request, subject, params)
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


def create_router(gateway: Gateway, verifier: Any, resolver: ContextResolver | None = None) -> APIRouter:
    """The routes over ``gateway``; ``verifier`` checks the end user's token at the gateway's clock;
    ``resolver`` says what is believed about the device and context (default: nothing from headers)."""
    router = APIRouter(tags=["gateway"], dependencies=[Depends(documented_headers)])
    subject_dep = subject_dependency(verifier, gateway.clock)
    context = resolver or ContextResolver(clock=gateway.clock)
    pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="ztcp-gateway-read")

    class ReadRoute(APIRoute):
        # The handler, not the route's ASGI app: FastAPI builds an included route's app from
        # get_route_handler() (per inclusion), so that is where the fast path has to sit.
        def get_route_handler(self) -> Handler:
            return FastRead(super().get_route_handler(), gateway, verifier, context, pool)

    def _caller(request: Request, response: Response, subject: SubjectIdentity) -> Caller:
        # Personal data: no proxy or browser cache. Device and context errors (401 for a bad device
        # credential, 422 naming a header) come before anything else is looked at.
        response.headers["Cache-Control"] = "no-store"
        device, ctx = context.resolve(request)
        return Caller(subject=subject, token=bearer_value(request), device=device, context=ctx)

    def read_record(
        request: Request,
        response: Response,
        dataset: PathName,
        record_id: PathName,
        fields: Annotated[str, Query(min_length=1, max_length=4000,
                                     description="comma-separated field names")],
        purpose: Annotated[str, Query(min_length=1, max_length=128, pattern=NAME_PATTERN,
                                      description="purpose code")],
        case_id: Annotated[str | None, Query(min_length=1, max_length=128, pattern=NAME_PATTERN)] = None,
        subject: SubjectIdentity = Depends(subject_dep),
    ) -> dict[str, Any]:
        names = parse_fields(fields)
        return gateway.read(_caller(request, response, subject), dataset, record_id, names, purpose, case_id)

    router.add_api_route("/v1/records/{dataset}/{record_id}", read_record, methods=["GET"], responses=_ERRORS,
                         summary="Read one record's fields through the decision point (the reference PEP)",
                         route_class_override=ReadRoute)

    @router.post("/v1/records/{dataset}/search", responses=_ERRORS,
                 summary="Exact lookup by national ID (blind index), recorded as pii.search")
    def search_records(
        request: Request,
        response: Response,
        dataset: PathName,
        body: Annotated[SearchRequest, Body()],
        subject: SubjectIdentity = Depends(subject_dep),
    ) -> dict[str, Any]:
        return gateway.search(_caller(request, response, subject), dataset, body)

    @router.patch("/v1/records/{dataset}/{record_id}", responses=_ERRORS,
                  summary="Change fields of one record through the decision point, recorded as pii.update")
    def update_record(
        request: Request,
        response: Response,
        dataset: PathName,
        record_id: PathName,
        body: Annotated[UpdateRequest, Body()],
        subject: SubjectIdentity = Depends(subject_dep),
    ) -> dict[str, Any]:
        return gateway.update(_caller(request, response, subject), dataset, record_id, body)

    @router.post("/v1/disclosures", status_code=201, responses=_ERRORS,
                 summary="Record a disclosure (pii.disclose) to an agency, a MyData party or the citizen")
    def disclose(
        request: Request,
        response: Response,
        body: Annotated[DisclosureRequest, Body()],
        subject: SubjectIdentity = Depends(subject_dep),
    ) -> dict[str, Any]:
        return gateway.disclose(_caller(request, response, subject), body)

    return router
