"""The reference gateway: a PEP in front of the protected database (DESIGN §4 flows 2–3, §10).

The end user calls the gateway with their own token (``Authorization: Bearer <subject token>``);
the gateway asks the decision point, then reads through :class:`keymgmt.ProtectedReader`, which
verifies the decision token and appends the provenance event *before* decrypting. The gateway
never accepts a decision token from a client: the only decision it acts on is the one it just
obtained, bound to this record, these fields and this purpose.

Endpoints
---------
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
    write: a change the ledger cannot record is not made (503). Protected fields are re-encrypted
    by keymgmt's table adapter; the response never echoes a value.
``POST /v1/disclosures``
    Records that data left the agency (``pii.disclose``): recipient (an agency over the exchange
    backbone, a MyData party, the citizen), legal basis or consent id, fields, and ``derived_from``
    the read events it discloses. Decided with action ``disclose`` and the recipient first, so the
    policy checks the agency's data-sharing agreement or the MyData party's consent (fields outside
    it are withheld). The gateway records the disclosure; the caller transmits the data over its
    channel, and only the fields in the answer.

Device and context headers (all optional; absent means the least trusted value)
--------------------------------------------------------------------------------
``X-Device-Id`` (default ``unknown``), ``X-Device-Managed`` / ``X-Device-Compliant`` (true|false,
default false), ``X-Network-Zone`` (internal|vpn|exchange|internet, default internet),
``X-Channel`` (default ``gateway``), ``X-Geo: lat,lon``. The client IP is the connection's peer.

In production these must not come from the browser: the bureau's device-posture service (MDM/EDR
attestation) or the trusted reverse proxy in front of the gateway sets them and strips any a client
sent, and the proxy's address — only it — goes in uvicorn's ``forwarded_allow_ips`` so the peer IP
is the real client's (uvicorn's default trusts ``X-Forwarded-For`` from 127.0.0.1). Unproxied, a
client could claim a managed device on the internal network: the defaults are the least trusted
values precisely so that stripping the headers is always safe.

Nothing personal is logged: errors name fields and reason codes, never values or national IDs.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

import keymgmt
import pdp
import provenance
from pdp.http_auth import BearerAuth
from pdp.identity import SubjectIdentity
from pdp.models import Context, Decision, DecisionRequest, Device
from pdp.problems import Problem

log = logging.getLogger("ztcp.gateway")

CALLER = "ztcp-gateway"
SYSTEM = "ztcp-gateway"
NAME_PATTERN = r"^[A-Za-z0-9_.:\-/]+$"
FIELD_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
NATIONAL_ID_COLUMN = "national_id"
BANK_ACCOUNT_FIELD = "bank_account"  # its changes carry a bank_account_ref (mule-account detection)
# Obligations this PEP knows how to fulfil. Anything else: refuse (a PEP must not ignore an
# obligation it does not understand).
KNOWN_OBLIGATIONS = frozenset({"record_provenance", "mask", "max_rows", "alert"})
READ_SOURCES = frozenset({"pii.read", "pii.export"})
STATE_COLUMN = "ztcp_dek"  # keymgmt's per-row DEK column: internal, never a readable field

Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NAME_PATTERN)]
PathName = Annotated[str, Path(min_length=1, max_length=128, pattern=NAME_PATTERN)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
EventId = Annotated[str, StringConstraints(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
_ACTOR_TYPES = {"employee": "staff", "citizen": "citizen", "agency": "agency", "mydata_party": "agency",
                "service": "service"}

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing/invalid token, or step-up required (WWW-Authenticate names the method)"},
    403: {"description": "denied by policy (problem+json with reasons)"},
    404: {"description": "unknown dataset or record"},
    422: {"description": "bad input (problem+json naming the field)"},
    503: {"description": "the provenance ledger or key provider is unavailable: no plaintext"},
}


# -- request bodies ---------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchRequest(_Strict):
    column: FieldName = NATIONAL_ID_COLUMN
    value: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    purpose: Name
    case_id: Name | None = None


class RecipientIn(_Strict):
    type: Literal["agency", "mydata", "citizen"]
    id: Name
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    channel: Name | None = None


class DisclosurePurpose(_Strict):
    code: Name
    case_id: Name | None = None
    legal_basis: Name | None = None
    consent_id: Name | None = None

    @model_validator(mode="after")
    def _basis(self) -> DisclosurePurpose:
        if not self.legal_basis and not self.consent_id:
            raise ValueError("a disclosure needs purpose.legal_basis or purpose.consent_id")
        return self


class UpdatePurpose(_Strict):
    code: Name
    case_id: Name | None = None


class UpdateRequest(_Strict):
    values: dict[FieldName, Annotated[str, StringConstraints(max_length=1000)] | None] = Field(
        min_length=1, max_length=50)
    purpose: UpdatePurpose


class DisclosureRequest(_Strict):
    dataset: Name
    record_id: Name
    fields: list[FieldName] = Field(min_length=1, max_length=200)
    recipient: RecipientIn
    purpose: DisclosurePurpose
    derived_from: list[EventId] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> DisclosureRequest:
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields must not repeat")
        return self


# -- helpers ------------------------------------------------------------------------------------
def _invalid(field: str, message: str) -> Problem:
    return Problem(422, "Invalid request", f"invalid field(s): {field}",
                   errors=[{"field": field, "message": message}])


def _bool_header(request: Request, name: str) -> bool:
    raw = request.headers.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise _invalid(f"header.{name}", "must be true or false")


def device_and_context(request: Request) -> tuple[Device, Context]:
    """Device posture and context from the documented headers; bad values are a 422 naming the header."""
    device_id = request.headers.get("x-device-id", "unknown")
    try:
        device = Device(id=device_id, managed=_bool_header(request, "X-Device-Managed"),
                        compliant=_bool_header(request, "X-Device-Compliant"))
    except ValidationError:
        raise _invalid("header.X-Device-Id", "1–128 characters of A-Z a-z 0-9 _ . : - /") from None
    geo = None
    raw_geo = request.headers.get("x-geo")
    if raw_geo is not None:
        lat, sep, lon = raw_geo.partition(",")
        try:
            if not sep:
                raise ValueError
            geo = {"lat": float(lat), "lon": float(lon)}
        except ValueError:
            raise _invalid("header.X-Geo", "must be 'lat,lon' in decimal degrees") from None
    peer = request.client.host if request.client else None
    try:
        ip = str(ipaddress.ip_address(peer)) if peer else None
    except ValueError:  # e.g. a unix socket or a test client: no address to report
        ip = None
    values = {"ip": ip, "network_zone": request.headers.get("x-network-zone", "internet").strip().lower(),
              "channel": request.headers.get("x-channel", "gateway"), "geo": geo}
    try:
        context = Context.model_validate(values)
    except ValidationError as exc:
        first = str(exc.errors()[0]["loc"][0]) if exc.errors() else "context"
        header = {"network_zone": "X-Network-Zone", "channel": "X-Channel", "geo": "X-Geo"}.get(first, first)
        raise _invalid(f"header.{header}", {"X-Network-Zone": "one of internal, vpn, exchange, internet",
                                            "X-Channel": "1–128 characters of A-Z a-z 0-9 _ . : - /",
                                            "X-Geo": "lat in [-90, 90], lon in [-180, 180]"}
                       .get(header, "invalid")) from None
    return device, context


def documented_headers(
    x_device_id: Annotated[str | None, Header(alias="X-Device-Id", description=(
        "device identifier from the bureau's device-posture service (default: unknown)"))] = None,
    x_device_managed: Annotated[str | None, Header(alias="X-Device-Managed", description=(
        "true|false: enrolled in the bureau's MDM (default false)"))] = None,
    x_device_compliant: Annotated[str | None, Header(alias="X-Device-Compliant", description=(
        "true|false: passes the posture baseline (default false)"))] = None,
    x_network_zone: Annotated[str | None, Header(alias="X-Network-Zone", description=(
        "internal|vpn|exchange|internet, set by the trusted proxy (default internet)"))] = None,
    x_channel: Annotated[str | None, Header(alias="X-Channel", description=(
        "calling channel, e.g. counter, eservice, call_center (default gateway)"))] = None,
    x_geo: Annotated[str | None, Header(alias="X-Geo", description="lat,lon of the client (optional)")] = None,
) -> None:
    """Declares the device/context headers in the OpenAPI document. They are parsed in one place,
    :func:`device_and_context`, which names the header at fault."""


def _subject_dependency(verifier: Any, clock: Callable[[], float]) -> Callable[[Request], Any]:
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


def _via(context: Context) -> dict[str, str]:
    via = {"channel": context.channel}
    if context.ip is not None:
        via["ip"] = str(context.ip)
    return via


def _bearer_value(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


class _Capture:
    """Wraps the recorder for one request so the gateway can return the event id it recorded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.receipts: list[Any] = []

    def record(self, event: Any) -> Any:
        receipt = self.inner.record(event)
        if getattr(event, "type", None) != "pii.denied":
            self.receipts.append(receipt)
        return receipt

    def provenance(self) -> dict:
        """The first recorded event's id and ledger seq (None when nothing was recorded)."""
        first = self.receipts[0] if self.receipts else None
        return {"event_id": first.event_id if first else None, "seq": first.seq if first else None}


def _step_up_methods(decision: Decision) -> list[str]:
    methods = [str(o.get("method")) for o in decision.obligations if o.get("type") == "step_up" and o.get("method")]
    return list(dict.fromkeys(methods)) or ["mfa"]


def _step_up_max_age(decision: Decision) -> int | None:
    """The freshness the policy wants of the step-up sign-in (RFC 9470 ``max_age``), if it says."""
    ages = [o["max_age"] for o in decision.obligations
            if o.get("type") == "step_up" and isinstance(o.get("max_age"), int) and o["max_age"] >= 0]
    return min(ages) if ages else None


def _step_up(decision: Decision) -> Problem:
    acr = " ".join(_step_up_methods(decision))
    max_age = _step_up_max_age(decision)
    fresh = f', max_age="{max_age}"' if max_age is not None else ""
    extra = {"max_age": max_age} if max_age is not None else {}
    return Problem(401, "Step-up authentication required",
                   f"sign in again with {acr} to continue", type_="urn:ztcp:problem:step-up",
                   headers={"WWW-Authenticate": (
                       'Bearer realm="ztcp", error="insufficient_user_authentication", '
                       f'error_description="stronger authentication required", acr_values="{acr}"{fresh}')},
                   decision_id=decision.decision_id, reasons=decision.reasons, required_method=acr, **extra)


def _deny(decision: Decision) -> Problem:
    return Problem(403, "Denied by policy", "; ".join(decision.reasons), type_="urn:ztcp:problem:denied",
                   decision_id=decision.decision_id, reasons=decision.reasons)


def _check_obligations(decision: Decision) -> None:
    unknown = sorted({str(o.get("type")) for o in decision.obligations} - KNOWN_OBLIGATIONS)
    if unknown:
        # Fail closed: an obligation this PEP cannot fulfil means no access.
        raise Problem(403, "Denied: unfulfillable obligation",
                      f"the gateway cannot fulfil obligation(s) {', '.join(unknown)}",
                      type_="urn:ztcp:problem:denied", decision_id=decision.decision_id,
                      reasons=[f"unfulfillable_obligation:{t}" for t in unknown])
    _max_rows(decision)


def _max_rows(decision: Decision) -> int | None:
    """The tightest ``max_rows`` limit; a malformed one is an obligation we cannot fulfil (fail closed)."""
    limits = []
    for o in decision.obligations:
        if o.get("type") != "max_rows":
            continue
        limit = o.get("limit")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise Problem(403, "Denied: unfulfillable obligation", "max_rows without a valid limit",
                          type_="urn:ztcp:problem:denied", decision_id=decision.decision_id,
                          reasons=["unfulfillable_obligation:max_rows"])
        limits.append(limit)
    return min(limits) if limits else None


def _applied(decision: Decision, returned: set[str], event_id: str | None, rows: int) -> list[dict]:
    out = []
    for o in decision.obligations:
        kind = o.get("type")
        if kind == "record_provenance":
            out.append({**o, "status": "applied", "event_id": event_id})
        elif kind == "mask":
            out.append({**o, "status": "applied" if o.get("field") in returned else "not_applicable"})
        elif kind == "max_rows":
            out.append({**o, "status": "applied", "rows": rows})
        elif kind == "alert":
            out.append({**o, "status": "raised"})  # carried by the decision log to the SIEM
    return out


def _refused(exc: keymgmt.DecryptRefused, decision: Decision) -> Problem:
    if exc.reason == "ledger_unavailable":
        return Problem(503, "Provenance ledger unavailable",
                       "the access could not be recorded, so no data is returned",
                       type_="urn:ztcp:problem:ledger-unavailable", decision_id=decision.decision_id,
                       headers={"Retry-After": "5"})
    return Problem(403, "Refused by the decryption gate", exc.reason, type_="urn:ztcp:problem:refused",
                   decision_id=decision.decision_id, reasons=[exc.reason])


def _db_down(exc: Exception) -> Problem:
    log.warning("protected database unavailable: %s", type(exc).__name__)  # no statement, no values
    return Problem(503, "Protected database unavailable", "no data is returned", headers={"Retry-After": "5"},
                   type_="urn:ztcp:problem:database-unavailable")


def _provider_down(decision: Decision) -> Problem:
    return Problem(503, "Key provider unavailable", "no data is returned", headers={"Retry-After": "5"},
                   type_="urn:ztcp:problem:key-provider-unavailable", decision_id=decision.decision_id)


# -- router ---------------------------------------------------------------------------------------
def create_router(runtime: Any) -> APIRouter:
    """The gateway over ``runtime`` (``point``, ``verifier``, ``protected_reader``, ``recorder``,
    ``ledger``, ``keys``; optionally ``clock``, ``provenance_event`` and ``dataset_classification``)."""
    router = APIRouter(tags=["gateway"], dependencies=[Depends(documented_headers)])
    clock = getattr(runtime, "clock", time.time)  # the runtime's "now" (the demo's simulated week)
    subject_dep = _subject_dependency(runtime.verifier, clock)

    def now_dt() -> datetime:
        return datetime.fromtimestamp(clock(), tz=UTC)

    def classified(resource: dict) -> dict:
        # Declare the register's classification so the decision log shows what the policy applied.
        lookup = getattr(runtime, "dataset_classification", None)
        cls = lookup(resource["dataset"]) if lookup else None
        if cls in ("public", "internal", "personal", "special"):
            resource["classification"] = cls
        return resource

    def reader_for(dataset: str) -> keymgmt.ProtectedReader:
        try:
            reader = runtime.protected_reader(dataset)
        except sa.exc.SQLAlchemyError as exc:
            raise _db_down(exc) from None
        if reader is None:
            raise Problem(404, "Not found", f"no protected dataset {dataset!r}")
        return reader

    def gate(reader: keymgmt.ProtectedReader, capture: _Capture,
             subject: SubjectIdentity | None = None) -> keymgmt.ProtectedReader:
        # A per-request gate over the shared table (and its DEK cache), recording through `capture`.
        # The gate names the actor by the decision token's subject; the gateway adds what the
        # verified subject token says of them (unit, roles), so the auditor sees "who, which unit".
        base = reader.event_factory
        factory = base
        if subject is not None:
            def factory(**fields: Any) -> Any:
                actor = fields.get("actor")
                if isinstance(actor, dict) and actor.get("id") == subject.id:
                    fields["actor"] = {**actor, **_actor(subject)}
                return base(**fields)
        return keymgmt.ProtectedReader(reader.table, reader.verifier, capture, reader.audit, system=SYSTEM,
                                       event_factory=factory)

    def fetch(reader: keymgmt.ProtectedReader, record_id: str) -> dict:
        table = reader.table
        pk: object = record_id
        try:
            if table.table.c[table.spec.pk].type.python_type is int:
                if not (record_id.isascii() and record_id.isdigit()) or len(record_id) > 18:  # int64
                    raise Problem(404, "Not found", "no such record")
                pk = int(record_id)
        except NotImplementedError:
            pass
        try:
            row = table.fetch_row(pk)
        except sa.exc.SQLAlchemyError as exc:
            raise _db_down(exc) from None
        if row is None:
            raise Problem(404, "Not found", "no such record")
        return row

    def citizen_of(reader: keymgmt.ProtectedReader, row: dict) -> str | None:
        column = reader.table.spec.citizen_ref_column
        return row[column] if column else None

    def check_fields(reader: keymgmt.ProtectedReader, fields: list[str], where: str) -> None:
        spec = reader.table.spec
        names = {col.name for col in reader.table.table.columns}
        readable = {c for c in names if not c.endswith("_bidx")} - {STATE_COLUMN, spec.citizen_ref_column}
        unknown = sorted(set(fields) - readable)
        if unknown:
            raise _invalid(where, f"unknown field(s) in {spec.dataset}: {', '.join(unknown)}")

    def open_record(request: Request, response: Response, dataset: str, record_id: str, fields: list[str],
                    where: str, *, changes: bool = False,
                    ) -> tuple[Device, Context, keymgmt.ProtectedReader, dict]:
        """What every one-record route does before asking the PDP: no caching, device and context from
        the headers, the dataset's reader, ``fields`` checked (named ``where`` in errors; a change may
        not touch the primary key), the record fetched and described as the decision's resource."""
        response.headers["Cache-Control"] = "no-store"  # personal data: no proxy or browser cache
        device, context = device_and_context(request)
        reader = reader_for(dataset)
        check_fields(reader, fields, where)
        if changes and reader.table.spec.pk in fields:
            raise _invalid(where, f"the primary key {reader.table.spec.pk!r} cannot be changed")
        row = fetch(reader, record_id)
        resource = classified({"type": "record", "dataset": dataset, "record_id": record_id,
                               "citizen_ref": citizen_of(reader, row), "fields": fields})
        return device, context, reader, resource

    @contextmanager
    def gate_errors(decision: Decision) -> Iterator[None]:
        """The decryption gate's refusals and outages as the problems a client can act on."""
        try:
            yield
        except keymgmt.DecryptRefused as exc:
            raise _refused(exc, decision) from None
        except keymgmt.ProviderUnavailable:
            raise _provider_down(decision) from None
        except sa.exc.SQLAlchemyError as exc:
            raise _db_down(exc) from None

    def decide(token: str, device: Device, context: Context, resource: dict, action: str,
               purpose: dict, recipient: dict | None = None) -> Decision:
        try:
            request = DecisionRequest.model_validate({
                "subject_token": token, "device": device.model_dump(), "context": context.model_dump(),
                "resource": resource, "action": action, "purpose": purpose, "recipient": recipient})
        except ValidationError as exc:
            loc = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "request"
            if loc.startswith("resource.citizen_ref"):
                # The stored reference is malformed: a data problem, not the caller's.
                log.error("stored citizen_ref of %s is malformed; refusing", resource.get("dataset"))
                raise Problem(503, "Record unavailable", "the record's citizen reference is invalid") from None
            raise _invalid(loc, "invalid") from None
        return runtime.point.decide(request, caller=CALLER)

    def denied_event(subject: SubjectIdentity, decision: Decision, resource: dict, purpose: dict,
                     context: Context) -> None:
        """Best effort: the trace shows refused attempts too (the decision log has them regardless)."""
        try:
            runtime.recorder.record(provenance.ProvenanceEvent(
                time=now_dt(), type="pii.denied", actor=_actor(subject), via={"system": SYSTEM, **_via(context)},
                citizen_ref=resource.get("citizen_ref"), dataset=resource["dataset"],
                record_id=resource.get("record_id"), fields=resource.get("fields", []),
                purpose={k: v for k, v in purpose.items() if v} if purpose.get("code") else None,
                decision_id=decision.decision_id, effect="deny"))
        except Exception as exc:  # noqa: BLE001 - the refusal stands whether or not this is recorded
            log.warning("pii.denied for decision %s not recorded: %s", decision.decision_id, type(exc).__name__)

    def _sign_in_too_old(decision: Decision, subject: SubjectIdentity) -> bool:
        """Would a fresh sign-in with the same method help? Yes when it is older than the policy's
        max_age (or, when the policy names none, when the risk score counted a stale token)."""
        max_age = _step_up_max_age(decision)
        if max_age is None:
            return any(f.name == "stale_token" for f in decision.risk.factors)
        signed_in = subject.auth_time or subject.issued_at
        return signed_in is None or clock() - signed_in > max_age

    def settle(decision: Decision, subject: SubjectIdentity, resource: dict, purpose: dict,
               context: Context) -> None:
        if decision.effect == "step_up":
            if subject.auth_method in _step_up_methods(decision) and not _sign_in_too_old(decision, subject):
                # Already signed in the way the policy asks, recently enough: challenging again would
                # loop the user through the same login forever, so this step-up cannot be met — fail closed.
                denied_event(subject, decision, resource, purpose, context)
                raise Problem(403, "Denied: step-up cannot help",
                              f"already authenticated with {subject.auth_method}; " + "; ".join(decision.reasons),
                              type_="urn:ztcp:problem:denied", decision_id=decision.decision_id,
                              reasons=[*decision.reasons, "step_up_already_satisfied"])
            raise _step_up(decision)
        if decision.effect != "permit" or not decision.token:
            denied_event(subject, decision, resource, purpose, context)
            raise _deny(decision)
        _check_obligations(decision)

    def decided(request: Request, subject: SubjectIdentity, device: Device, context: Context, resource: dict,
                action: str, purpose: dict, recipient: dict | None = None) -> Decision:
        """The decision point's answer for this caller, settled: only a usable permit returns."""
        decision = decide(_bearer_value(request), device, context, resource, action, purpose, recipient)
        settle(decision, subject, resource, purpose, context)
        return decision

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
    ) -> dict:
        names = [f.strip() for f in fields.split(",")]
        if any(not FIELD_PATTERN.fullmatch(f) or len(f) > 64 for f in names):
            raise _invalid("query.fields", "comma-separated field names ([a-z][a-z0-9_]*)")
        if len(set(names)) != len(names) or len(names) > 200:
            raise _invalid("query.fields", "at most 200 fields, none repeated")
        device, context, reader, resource = open_record(request, response, dataset, record_id, names, "query.fields")
        purpose_doc = {"code": purpose, "case_id": case_id}
        decision = decided(request, subject, device, context, resource, "read", purpose_doc)
        permitted = [f for f in names if f in set(decision.permitted_fields)]
        limit = _max_rows(decision)
        if limit is not None and limit < 1:
            raise _deny(decision.model_copy(update={"reasons": ["max_rows_zero"]}))
        capture = _Capture(runtime.recorder)
        with gate_errors(decision):
            values = gate(reader, capture, subject).read(decision.token, record_id, permitted, purpose=purpose,
                                                         via=_via(context), now=clock())
        recorded = capture.provenance()
        return {
            "dataset": dataset, "record_id": record_id, "citizen_ref": resource["citizen_ref"],
            "fields": values, "withheld_fields": [f for f in names if f not in values],
            "decision_id": decision.decision_id, "policy_revision": decision.policy.revision,
            "obligations_applied": _applied(decision, set(values), recorded["event_id"], 1),
            "provenance": recorded,
        }

    @router.post("/v1/records/{dataset}/search", responses=_ERRORS,
                 summary="Exact lookup by national ID (blind index), recorded as pii.search")
    def search_records(
        request: Request,
        response: Response,
        dataset: PathName,
        body: Annotated[SearchRequest, Body()],
        subject: SubjectIdentity = Depends(subject_dep),
    ) -> dict:
        response.headers["Cache-Control"] = "no-store"  # personal data: no proxy or browser cache
        device, context = device_and_context(request)
        reader = reader_for(dataset)
        if body.column not in reader.table.spec.blind_index:
            raise _invalid("column", f"{dataset} has no blind index on {body.column!r}")
        citizen_ref = None
        if body.column == NATIONAL_ID_COLUMN:
            try:
                citizen_ref = provenance.citizen_ref(body.value, runtime.keys.blind_index)
            except provenance.InvalidNationalId as exc:
                raise _invalid("value", str(exc)) from None  # the message never holds the value
        resource = classified({"type": "record", "dataset": dataset, "citizen_ref": citizen_ref,
                               "fields": [body.column]})
        purpose_doc = {"code": body.purpose, "case_id": body.case_id}
        decision = decided(request, subject, device, context, resource, "search", purpose_doc)
        capture = _Capture(runtime.recorder)
        with gate_errors(decision):
            pks = gate(reader, capture, subject).search(decision.token, body.column, body.value, purpose=body.purpose,
                                                        via=_via(context), now=clock())
        limit = _max_rows(decision)
        truncated = limit is not None and len(pks) > limit
        pks = pks[:limit] if limit is not None else pks
        recorded = capture.provenance()
        return {
            "dataset": dataset, "citizen_ref": citizen_ref, "records": [{"record_id": str(pk)} for pk in pks],
            "count": len(pks), "truncated": truncated, "decision_id": decision.decision_id,
            "obligations_applied": _applied(decision, set(), recorded["event_id"], len(pks)),
            "provenance": recorded,
        }

    @router.patch("/v1/records/{dataset}/{record_id}", responses=_ERRORS,
                  summary="Change fields of one record through the decision point, recorded as pii.update")
    def update_record(
        request: Request,
        response: Response,
        dataset: PathName,
        record_id: PathName,
        body: Annotated[UpdateRequest, Body()],
        subject: SubjectIdentity = Depends(subject_dep),
    ) -> dict:
        names = sorted(body.values)
        device, context, reader, resource = open_record(request, response, dataset, record_id, names, "values",
                                                        changes=True)
        purpose_doc = body.purpose.model_dump(exclude_none=True)
        decision = decided(request, subject, device, context, resource, "update", purpose_doc)
        if set(names) - set(decision.permitted_fields):
            # An update is all or nothing: changing only some of the asked fields would corrupt the record.
            withheld = sorted(set(names) - set(decision.permitted_fields))
            denied_event(subject, decision, resource, purpose_doc, context)
            raise Problem(403, "Denied by policy", f"not permitted to change: {', '.join(withheld)}",
                          type_="urn:ztcp:problem:denied", decision_id=decision.decision_id,
                          reasons=["fields_not_permitted"])
        try:
            # The same check the decryption gate makes: the token is this decision's, for this change.
            claims = pdp.verify_decision_token(decision.token, runtime.decision_verifier, now=clock())
        except pdp.DecisionTokenError as exc:
            raise Problem(403, "Refused", exc.reason, type_="urn:ztcp:problem:refused",
                          decision_id=decision.decision_id, reasons=[exc.reason]) from None
        if (claims.action != "update" or claims.dataset != dataset or claims.record_id != record_id
                or not claims.covers(names)):
            raise Problem(403, "Refused", "decision does not cover this change", type_="urn:ztcp:problem:refused",
                          decision_id=decision.decision_id, reasons=["decision_mismatch"])
        account_ref = None
        if BANK_ACCOUNT_FIELD in names and body.values[BANK_ACCOUNT_FIELD] is not None:
            # Which account the payout now goes to, as a keyed reference: the SIEM can see several
            # citizens redirected to one (mule) account without any account number being recorded.
            try:
                account_ref = provenance.bank_account_ref(str(body.values[BANK_ACCOUNT_FIELD]),
                                                          runtime.keys.blind_index)
            except provenance.InvalidBankAccount as exc:
                raise _invalid(f"values.{BANK_ACCOUNT_FIELD}", str(exc)) from None
        try:
            receipt = runtime.recorder.record(provenance.ProvenanceEvent(
                time=now_dt(), type="pii.update", actor=_actor(subject), via={"system": SYSTEM, **_via(context)},
                citizen_ref=resource["citizen_ref"], dataset=dataset, record_id=record_id, fields=names,
                purpose=purpose_doc, decision_id=decision.decision_id, effect="permit",
                bank_account_ref=account_ref))
        except ValidationError:
            raise _invalid("purpose", "refused by the provenance schema (values shaped like a national ID or "
                                      "phone number are not allowed)") from None
        except Exception as exc:  # noqa: BLE001 - fail closed: an unrecorded change is not made
            log.warning("update under decision %s not recorded: %s", decision.decision_id, type(exc).__name__)
            raise Problem(503, "Provenance ledger unavailable", "the change could not be recorded, so it was "
                          "not made", type_="urn:ztcp:problem:ledger-unavailable",
                          decision_id=decision.decision_id, headers={"Retry-After": "5"}) from None
        table = reader.table
        try:
            table.update(gate(reader, _Capture(runtime.recorder))._pk_value(record_id), dict(body.values))
        except keymgmt.ProviderUnavailable:
            raise _provider_down(decision) from None
        except keymgmt.KeyMgmtError as exc:
            log.warning("update of %s failed after it was recorded: %s", dataset, type(exc).__name__)
            raise Problem(409, "Update failed", "the record could not be changed; the attempt is recorded",
                          decision_id=decision.decision_id) from None
        except sa.exc.SQLAlchemyError as exc:
            raise _db_down(exc) from None
        return {
            "dataset": dataset, "record_id": record_id, "citizen_ref": resource["citizen_ref"],
            "updated_fields": names, "decision_id": decision.decision_id,
            "obligations_applied": _applied(decision, set(), receipt.event_id, 1),
            "provenance": {"event_id": receipt.event_id, "seq": receipt.seq},
        }

    @router.post("/v1/disclosures", status_code=201, responses=_ERRORS,
                 summary="Record a disclosure (pii.disclose) to an agency, a MyData party or the citizen")
    def disclose(
        request: Request,
        response: Response,
        body: Annotated[DisclosureRequest, Body()],
        subject: SubjectIdentity = Depends(subject_dep),
    ) -> dict:
        device, context, _, resource = open_record(request, response, body.dataset, body.record_id,
                                                   list(body.fields), "fields")
        citizen_ref = resource["citizen_ref"]
        sources = _sources(runtime.ledger, body, subject, citizen_ref)
        purpose_doc = body.purpose.model_dump(exclude_none=True)
        # The recipient goes to the PDP too: the policy checks their agreement or consent.
        decision = decided(request, subject, device, context, resource, "disclose", purpose_doc,
                           recipient=body.recipient.model_dump(include={"type", "id"}))
        fields = [f for f in body.fields if f in set(decision.permitted_fields)]
        try:
            event = provenance.ProvenanceEvent(
                time=now_dt(), type="pii.disclose", actor=_actor(subject), via={"system": SYSTEM, **_via(context)},
                citizen_ref=citizen_ref, dataset=body.dataset, record_id=body.record_id, fields=fields,
                purpose=purpose_doc, decision_id=decision.decision_id, effect="permit",
                recipient=body.recipient.model_dump(exclude_none=True), derived_from=sources)
        except ValidationError as exc:
            loc = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "body"
            raise _invalid(loc or "body", "refused by the provenance schema (values shaped like a national "
                                          "ID or phone number are not allowed)") from None
        try:
            receipt = runtime.recorder.record(event)
        except Exception as exc:  # noqa: BLE001 - fail closed: an unrecorded disclosure is not allowed
            log.warning("disclosure under decision %s not recorded: %s", decision.decision_id, type(exc).__name__)
            raise Problem(503, "Provenance ledger unavailable", "the disclosure could not be recorded; "
                          "do not send the data", type_="urn:ztcp:problem:ledger-unavailable",
                          decision_id=decision.decision_id, headers={"Retry-After": "5"}) from None
        return {
            "event_id": receipt.event_id, "seq": receipt.seq, "decision_id": decision.decision_id,
            "citizen_ref": citizen_ref, "fields": fields,
            "withheld_fields": [f for f in body.fields if f not in fields],
            "recipient": body.recipient.model_dump(exclude_none=True), "derived_from": sources,
            "obligations_applied": _applied(decision, set(fields), receipt.event_id, 1),
        }

    return router


def _actor(subject: SubjectIdentity) -> dict:
    actor: dict[str, Any] = {"id": subject.id, "type": _ACTOR_TYPES.get(subject.type, "staff"),
                             "roles": list(subject.roles)}
    if subject.org_unit:
        actor["unit"] = subject.org_unit
    return actor


def _sources(ledger: Any, body: DisclosureRequest, subject: SubjectIdentity, citizen_ref: str | None) -> list[str]:
    """The read events a disclosure derives from: they must exist, be this subject's reads of this
    record, and together cover every disclosed field (you can only pass on what you have read)."""
    ids = list(dict.fromkeys(body.derived_from))
    try:
        found = ledger.get_by_event_ids(ids)
    except Exception as exc:  # noqa: BLE001 - cannot check lineage: fail closed
        log.warning("derived_from lookup failed: %s", type(exc).__name__)
        raise Problem(503, "Provenance ledger unavailable", "cannot check derived_from",
                      type_="urn:ztcp:problem:ledger-unavailable", headers={"Retry-After": "5"}) from None
    missing = [i for i in ids if i not in found]
    if missing:
        raise _invalid("derived_from", f"unknown event id(s): {', '.join(missing[:5])}")
    covered: set[str] = set()
    for event_id in ids:
        ev = found[event_id].event
        if (ev.type not in READ_SOURCES or ev.actor.id != subject.id or ev.citizen_ref != citizen_ref
                or ev.dataset != body.dataset or ev.record_id != body.record_id):
            raise _invalid("derived_from", f"event {event_id} is not your read of this record")
        covered.update(ev.fields)
    uncovered = sorted(set(body.fields) - covered)
    if uncovered:
        raise _invalid("fields", f"not read in derived_from: {', '.join(uncovered)}")
    return ids
