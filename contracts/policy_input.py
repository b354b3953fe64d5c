"""The policy input: the document the PDP evaluates its Rego policy on (``input`` in the pack).

``pdp.point.build_input`` builds it from the verified subject, the validated
:class:`contracts.decision.DecisionRequest` and the :class:`contracts.signals.Signals`; the pack
reads it (``policy/rego/README.md``) and the decision log keeps a minimised copy
(:mod:`contracts.decision_log`). Time is the PDP's, in the bureau's zone.

``typing.TypedDict``\\ s: the decide path builds plain dicts and pays nothing for the contract. Each
part mirrors the request model it is dumped from (``model_dump(mode="json")``): a field added to
the request model must be added here too (``tests/pdp`` checks a real input against this contract).
"""

from __future__ import annotations

from typing import TypedDict

from contracts.signals import Signals


class SubjectAuth(TypedDict):
    method: str  # auth_method or RFC 8176 amr from the token ("none" when absent)
    mfa: bool
    auth_time: int | None
    token_age_s: int


class InputSubject(TypedDict):
    """Who asks, as their verified token says (never from the request body)."""

    id: str
    type: str
    roles: list[str]
    org_unit: str | None
    citizen_ref: str | None  # the subject's own citizen record, for the self-record signal
    auth: SubjectAuth


class DevicePosture(TypedDict):
    baseline_ok: bool | None
    edr_running: bool | None
    disk_encrypted: bool | None
    patch_age_days: int | None


class InputDevice(TypedDict):
    id: str
    managed: bool
    compliant: bool
    posture: DevicePosture


class InputGeo(TypedDict):
    lat: float
    lon: float
    country: str | None


class InputContext(TypedDict):
    ip: str | None
    network_zone: str  # internal | vpn | exchange | internet
    channel: str
    time: str  # RFC 3339, the PDP's clock in the bureau's zone
    client_time: str | None  # the PEP's clock, as sent
    geo: InputGeo | None


class InputResource(TypedDict):
    type: str
    dataset: str
    record_id: str | None
    citizen_ref: str | None
    fields: list[str]
    classification: str  # public | internal | personal | special


class InputPurpose(TypedDict):
    code: str | None
    case_id: str | None
    legal_basis: str | None
    consent_id: str | None
    justification: str | None  # free text: the decision log keeps only its presence and length
    break_glass: bool


class InputRecipient(TypedDict):
    type: str  # agency | mydata | citizen
    id: str


class PolicyInput(TypedDict):
    subject: InputSubject
    device: InputDevice
    context: InputContext
    resource: InputResource
    action: str  # read | search | bulk_search | export | update | disclose
    purpose: InputPurpose
    recipient: InputRecipient | None
    signals: Signals
