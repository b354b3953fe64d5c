"""The decision-log entry: what the PDP writes for every decision, and what its readers may rely on.

OPA decision-log field names where they fit (``decision_id``, ``path``, ``input``, ``result``,
``timestamp``, ``metrics``, ``bundles``), so tooling that reads OPA logs reads ours; ``bundles`` is
keyed by bundle name as in OPA (``{"ztcp": {"revision", "digest"}}``). Written by
``pdp.point.log_entry``; read by the simulation (``policy.simulate``), the console, the SIEM (kind
``decision``) and the ``ztcp-decisions`` Elasticsearch data stream.

The input is logged minimised: no subject token, and of the free-text justification only its
presence and length. A decision refused before its input was built (a bad subject token, an
internal error) logs only who, what and on which resource (:class:`RefusedInput`).

``typing.TypedDict``\\ s: the PDP builds plain dicts and pays nothing for the contract;
``contracts.conformance.problems(entry, DecisionLogEntry)`` checks one (tests, diagnostics).
"""

# No ``from __future__ import annotations`` here: Python 3.11's TypedDict only recognises
# ``NotRequired`` in evaluated annotations.

from typing import Any, NotRequired, TypedDict

from contracts.policy_input import InputContext, InputDevice, InputRecipient, InputResource, InputSubject
from contracts.signals import Signals


class LoggedPurpose(TypedDict):
    code: str | None
    case_id: str | None
    legal_basis: str | None
    consent_id: str | None
    break_glass: bool
    justification_present: bool
    justification_length: int


class LoggedInput(TypedDict):
    """The policy input (:class:`contracts.policy_input.PolicyInput`) as logged."""

    subject: InputSubject
    device: InputDevice
    context: InputContext
    resource: InputResource
    action: str
    purpose: LoggedPurpose
    recipient: InputRecipient | None
    signals: Signals


class RefusedSubject(TypedDict):
    id: str | None  # None when the subject token itself was refused


class RefusedInput(TypedDict):
    """Logged when the decision was refused before the policy input existed."""

    subject: RefusedSubject
    resource: InputResource
    action: str


class LoggedRiskFactor(TypedDict):
    name: str
    points: int
    detail: str


class LoggedRisk(TypedDict):
    score: int  # 0-100
    level: str  # low | medium | high | critical
    factors: list[LoggedRiskFactor]


class LoggedResult(TypedDict):
    """The decision without its token, id, policy reference and times (those are logged apart)."""

    effect: str  # permit | deny | step_up
    risk: LoggedRisk
    reasons: list[str]
    obligations: list[dict[str, Any]]  # each has a "type" (mask, max_rows, record_provenance, ...)
    permitted_fields: list[str]


class BundleRef(TypedDict):
    revision: str | None
    digest: str | None


class Bundles(TypedDict):
    ztcp: BundleRef  # OPA's shape: bundle name → its revision


class Labels(TypedDict):
    engine: str | None  # regorus-rvm, regorus-interpreter, regopy, opa


class DecisionMetrics(TypedDict):
    timer_rego_query_eval_ns: int
    timer_server_handler_ns: int


class ShadowResult(TypedDict):
    """A candidate revision evaluated on the same input (not enforced)."""

    revision: str | None
    effect: str  # permit | deny | step_up, or "error"
    agrees: bool
    reasons: list[str]


class DecisionLogEntry(TypedDict):
    decision_id: str
    timestamp: str  # RFC 3339, UTC, "Z"
    ts: float  # the same instant, epoch seconds
    path: str  # the policy query, "ztcp/authz/decision"
    input: LoggedInput | RefusedInput
    result: LoggedResult
    bundles: Bundles
    labels: Labels
    metrics: DecisionMetrics
    requested_by: str | None  # the calling system (PEP) when it authenticated
    shadow: NotRequired[ShadowResult]
