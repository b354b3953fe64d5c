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

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

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


def create_router(gateway: Gateway, verifier: Any, resolver: ContextResolver | None = None) -> APIRouter:
    """The routes over ``gateway``; ``verifier`` checks the end user's token at the gateway's clock;
    ``resolver`` says what is believed about the device and context (default: nothing from headers)."""
    router = APIRouter(tags=["gateway"], dependencies=[Depends(documented_headers)])
    subject_dep = subject_dependency(verifier, gateway.clock)
    context = resolver or ContextResolver(clock=gateway.clock)

    def _caller(request: Request, response: Response, subject: SubjectIdentity) -> Caller:
        # Personal data: no proxy or browser cache. Device and context errors (401 for a bad device
        # credential, 422 naming a header) come before anything else is looked at.
        response.headers["Cache-Control"] = "no-store"
        device, ctx = context.resolve(request)
        return Caller(subject=subject, token=bearer_value(request), device=device, context=ctx)

    @router.get("/v1/records/{dataset}/{record_id}", responses=_ERRORS,
                summary="Read one record's fields through the decision point (the reference PEP)")
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
