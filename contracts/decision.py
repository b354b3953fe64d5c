"""The decision request and the decision (docs/design.md, "Contracts").

Field names are the contract: extend, don't rename.

The request never carries who the subject is beyond their token: a body with ``subject`` or
``roles`` is refused (422) rather than silently ignored, so a PEP that tries it learns at once.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.national_id import CITIZEN_REF_PATTERN
from contracts.screen import contains_national_id, screen_text

# Every id, code and channel of a request reaches the decision log: a national ID in any of them is refused.
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-/]+$"),
                 AfterValidator(screen_text)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
CitizenRef = Annotated[str, StringConstraints(pattern=CITIZEN_REF_PATTERN)]
_CITIZEN_REF = re.compile(CITIZEN_REF_PATTERN)
Action = Literal["read", "search", "bulk_search", "export", "update", "disclose"]
Effect = Literal["permit", "deny", "step_up"]
NetworkZone = Literal["internal", "vpn", "exchange", "internet"]
Classification = Literal["public", "internal", "personal", "special"]


class _Strict(BaseModel):
    # hide_input_in_errors: a refused value (possibly a national ID) never rides along in the error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Posture(_Strict):
    baseline_ok: bool | None = None
    edr_running: bool | None = None
    disk_encrypted: bool | None = None
    patch_age_days: int | None = Field(default=None, ge=0, le=36500)


class Device(_Strict):
    id: Name
    managed: bool = False
    compliant: bool = False
    posture: Posture = Posture()


class Geo(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


@lru_cache(maxsize=4096)
def _parsed_ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None


def _ip(value: Any) -> Any:
    """A client address once per distinct text: a counter's few addresses recur on every call, and
    the union below would otherwise parse each one as IPv4 and as IPv6 (pydantic's smart union tries
    both), a measurable share of a decision. The error names the field, never the value."""
    if not isinstance(value, str):
        return value  # an address object, None, or a wrong type the union refuses
    parsed = _parsed_ip(value)
    if parsed is None:
        raise PydanticCustomError("ip_any_address", "value is not a valid IPv4 or IPv6 address")
    return parsed


class Context(_Strict):
    ip: Annotated[IPv4Address | IPv6Address | None, BeforeValidator(_ip)] = None
    network_zone: NetworkZone
    channel: Name = "api"
    time: datetime | None = Field(default=None, description="the PEP's clock; signals use the PDP's")
    geo: Geo | None = None

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("time must include a UTC offset (RFC 3339)")
        return value


class Resource(_Strict):
    type: Name
    dataset: Name
    record_id: Name | None = None
    citizen_ref: CitizenRef | None = None
    fields: list[FieldName] = Field(default_factory=list, max_length=200)
    classification: Classification = "personal"

    @field_validator("fields")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("fields must not repeat")
        return value


class Purpose(_Strict):
    code: Name | None = None
    case_id: Name | None = None
    legal_basis: Name | None = None
    consent_id: Name | None = None
    justification: Annotated[str, StringConstraints(max_length=2000)] | None = None
    break_glass: bool = False


class Recipient(_Strict):
    """Who receives disclosed data (action ``disclose``): the policy checks their agreement or consent.

    ``id`` is the agency or MyData party id from the bureau's registers, or, for the data subject
    themself, their ``citizen_ref`` (never a national ID).
    """

    type: Literal["agency", "mydata", "citizen"]
    id: Name

    @model_validator(mode="after")
    def _citizen_by_reference(self) -> Recipient:
        if contains_national_id(self.id):  # it would land in the decision log
            raise ValueError("a recipient id must not be shaped like a national ID; name citizens by citizen_ref")
        if self.type == "citizen" and not _CITIZEN_REF.fullmatch(self.id):
            raise ValueError("a citizen recipient is named by their citizen_ref (cr_…), never a national ID")
        return self


class DecisionRequest(_Strict):
    subject_token: Annotated[str, StringConstraints(min_length=10, max_length=16384)]
    device: Device
    context: Context
    resource: Resource
    action: Action
    purpose: Purpose = Purpose()
    recipient: Recipient | None = Field(default=None, description="required by policy for action disclose")

    @model_validator(mode="after")
    def _recipient_only_for_disclosures(self) -> DecisionRequest:
        if self.recipient is not None and self.action != "disclose":
            raise ValueError("recipient applies to action 'disclose' only")
        return self


class RiskFactor(BaseModel):
    name: str
    points: int
    detail: str = ""


class Risk(BaseModel):
    score: int = Field(ge=0, le=100)
    level: Literal["low", "medium", "high", "critical"]
    factors: list[RiskFactor] = Field(default_factory=list)


class PolicyRef(BaseModel):
    revision: str | None
    digest: str | None


class Decision(BaseModel):
    decision_id: str
    effect: Effect
    risk: Risk
    reasons: list[str]
    obligations: list[dict[str, Any]] = Field(default_factory=list)
    permitted_fields: list[str] = Field(default_factory=list)
    policy: PolicyRef
    issued_at: datetime
    expires_at: datetime
    token: str | None = Field(default=None, description="decision token (compact JWS), permits only")
