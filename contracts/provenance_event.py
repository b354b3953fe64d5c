"""The provenance event (docs/design.md, "Contracts") and its canonical bytes.

Events name a citizen only by ``citizen_ref``. Every string anywhere in an event passes the one
PII screen (:mod:`contracts.screen`): a raw national ID or phone number is refused.

``canonical_bytes`` is RFC 8785 (JCS). Events contain only strings, lists, nested objects with
ASCII keys and, as numbers, only non-negative integers below 2^53 (an exchange's citizen count),
for which JCS is exactly "sorted keys, minimal JSON escapes, UTF-8, integers in plain digits".
Model fields are declared in sorted order, so pydantic-core's serializer emits JCS directly
(≈100× faster than the pure-Python ``rfc8785`` package); the test suite checks byte equality with
``rfc8785.dumps`` on generated events, and anything the fast path refuses (a lone surrogate) goes
through orjson with sorted keys or ``rfc8785`` itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
import rfc8785
import uuid_utils
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from contracts.bank_account import BANK_ACCOUNT_REF_PATTERN
from contracts.intermediary import INTERMEDIARY_REF_PATTERN
from contracts.national_id import CITIZEN_REF_PATTERN
from contracts.screen import screen_text

EVENT_TYPES = ("pii.read", "pii.search", "pii.export", "pii.disclose", "pii.update", "pii.denied", "pii.receive")
# Government data exchange (exchange/, contracts/exchange.py): a transfer's own record, the agency's
# receipt (or its refusal), the deadline passing without one, and data received from an agency.
EXCHANGE_TYPES = ("exchange.transfer", "exchange.receipt", "exchange.receipt_refused", "exchange.receipt_overdue",
                  "exchange.inbound")
AUDIT_TYPE = re.compile(r"^audit\.[a-z][a-z0-9_.]{0,62}$")


SafeStr = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(screen_text)]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")]
EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"), AfterValidator(screen_text)]


def _str_as(key: str) -> BeforeValidator:
    """A BeforeValidator that accepts a bare string for a one-key object: ``v`` becomes ``{key: v}``."""

    def coerce(v: Any) -> Any:
        return {key: v} if isinstance(v, str) else v

    return BeforeValidator(coerce)


class _Strict(BaseModel):
    # Fields are declared in sorted order: pydantic then serialises straight to RFC 8785 key order.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)


class Actor(_Strict):
    """Who acted. ``id`` is the staff/service account; the citizen view shows ``unit``/``agency``."""

    agency: SafeStr | None = None
    id: SafeStr
    roles: list[SafeStr] = Field(default_factory=list)
    type: Literal["staff", "service", "citizen", "auditor", "agency"] = "staff"
    unit: SafeStr | None = None


class Via(_Strict):
    channel: SafeStr | None = None
    ip: SafeStr | None = None
    system: SafeStr | None = None


class Purpose(_Strict):
    case_id: SafeStr | None = None
    code: SafeStr
    consent_id: SafeStr | None = None
    legal_basis: SafeStr | None = None


class Recipient(_Strict):
    """Where disclosed data went: another agency over the exchange backbone, a MyData party, the citizen."""

    channel: SafeStr | None = None
    id: SafeStr
    name: SafeStr | None = None
    type: Literal["agency", "mydata", "citizen", "other"]


class ExchangeRef(_Strict):
    """Which exchange transfer an event belongs to (types ``exchange.*``, and ``pii.disclose`` /
    ``pii.receive`` of a transfer): the counterpart agency, the agreement, the exact payload bytes'
    SHA-256 and, on the transfer's own event, the signed transfer record's SHA-256 and citizen count."""

    agency: SafeStr
    agreement_id: SafeStr
    citizens: Annotated[int, Field(ge=0)] | None = None
    direction: Literal["outbound", "inbound"] = "outbound"
    payload_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    reason: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None  # a refusal's code
    record_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    transfer_id: Annotated[str, Field(pattern=r"^xfer_[A-Za-z0-9]{1,64}$")]


class ProvenanceEvent(_Strict):
    """One personal-data access (or an auditor's own query, ``audit.*``)."""

    actor: Annotated[Actor, _str_as("id")]
    # pii.update of a payout account: which account it now points to, as a keyed reference only.
    bank_account_ref: Annotated[str, Field(pattern=BANK_ACCOUNT_REF_PATTERN)] | None = None
    citizen_ref: Annotated[str, Field(pattern=CITIZEN_REF_PATTERN)] | None = None
    dataset: SafeStr | None = None
    decision_id: SafeStr | None = None
    derived_from: list[EventId] = Field(default_factory=list)
    effect: Literal["permit", "deny", "step_up"] | None = None
    event_id: EventId = Field(default_factory=lambda: str(uuid_utils.uuid7()))
    exchange: ExchangeRef | None = None
    fields: list[FieldName] = Field(default_factory=list)
    # A claim's agent or doctor (the claims-fraud indicators count claims per intermediary), keyed.
    intermediary_ref: Annotated[str, Field(pattern=INTERMEDIARY_REF_PATTERN)] | None = None
    purpose: Annotated[Purpose, _str_as("code")] | None = None
    query: SafeStr | None = Field(default=None, description="what an audit.* query asked (no raw IDs)")
    recipient: Recipient | None = None
    record_id: SafeStr | None = None
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    type: str
    via: Via = Field(default_factory=Via)

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in EVENT_TYPES and v not in EXCHANGE_TYPES and not AUDIT_TYPE.match(v):
            raise ValueError(f"must be one of {', '.join(EVENT_TYPES + EXCHANGE_TYPES)} or audit.*")
        return v

    @field_validator("time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @model_validator(mode="after")
    def _disclosure_rules(self) -> ProvenanceEvent:
        if self.type == "pii.disclose":
            if self.recipient is None:
                raise ValueError("recipient: a pii.disclose event must name its recipient")
            if self.purpose is None or not (self.purpose.legal_basis or self.purpose.consent_id):
                raise ValueError("purpose: a pii.disclose event needs purpose.legal_basis or purpose.consent_id")
            # A disclosure in an exchange transfer derives from the batch read under its decision
            # (decision_id) and is linked to the transfer by exchange.transfer_id instead.
            if not self.derived_from and self.exchange is None:
                raise ValueError("derived_from: a pii.disclose event must name the read events it discloses")
        if (self.type.startswith("exchange.") or self.type == "pii.receive") and self.exchange is None:
            raise ValueError(f"exchange: a {self.type} event must name its transfer")
        if self.event_id in self.derived_from:
            raise ValueError("derived_from: an event cannot derive from itself")
        return self

    def canonical_bytes(self) -> bytes:
        return canonical_bytes(self)


def _payload(event: ProvenanceEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _fields_sorted(model: type[BaseModel]) -> bool:
    names = list(model.model_fields)
    return names == sorted(names) and all(
        _fields_sorted(f.annotation)
        for f in model.model_fields.values()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    )


_PRESORTED = all(_fields_sorted(m) for m in (ProvenanceEvent, Actor, Via, Purpose, Recipient, ExchangeRef))
_to_json = ProvenanceEvent.__pydantic_serializer__.to_json


def canonical_bytes(event: ProvenanceEvent) -> bytes:
    """RFC 8785 canonical JSON of the event (the Merkle leaf input)."""
    if _PRESORTED:
        # pydantic-core writes keys in declaration (= sorted) order with JCS-compatible escaping.
        try:
            return _to_json(event, exclude_none=True)
        except ValueError:
            pass  # e.g. a lone surrogate: let the reference implementation decide
    data = _payload(event)
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return rfc8785.dumps(data)


def canonical_bytes_reference(event: ProvenanceEvent) -> bytes:
    """The same bytes through the ``rfc8785`` package (used by tests and ``verify --full``)."""
    return rfc8785.dumps(_payload(event))


def event_from_bytes(body: bytes) -> ProvenanceEvent:
    return ProvenanceEvent.model_validate_json(body)
