"""Every console page asks the PDP, as its user, before it shows or changes anything.

A page is an action on an audit dataset (provenance events for the trace, alerts for the SOC,
policy revisions for officers, key events for custodians). The request carries the session's
subject token, so roles come from the verified token and the decision is logged like any other.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import ValidationError

from contracts.decision import Decision, DecisionRequest


@dataclass(frozen=True)
class Page:
    dataset: str
    action: str
    purpose: str


TRACE = Page("provenance_events", "search", "internal_audit")
EXPORT = Page("provenance_events", "export", "internal_audit")
ALERTS = Page("alerts", "read", "security_monitoring")
ALERT_TRIAGE = Page("alerts", "update", "security_monitoring")
REVISIONS = Page("policy_revisions", "read", "policy_management")
REVISION_CHANGE = Page("policy_revisions", "update", "policy_management")
KEYS = Page("key_events", "read", "key_management")


# Which roles see a button for an action on a page they can already open. Display only: the action
# itself is decided by the PDP when it is posted. Asking the PDP just to draw a button would log a
# deny for everyone without the role, and denies raise their risk score (recent_denies) and feed
# the SIEM's probing rules.
BUTTON_ROLES: dict[Page, frozenset[str]] = {
    ALERT_TRIAGE: frozenset({"soc_analyst", "security_officer"}),
    TRACE: frozenset({"auditor", "soc_analyst"}),
    REVISION_CHANGE: frozenset({"security_officer"}),
}


def shows_button(roles: tuple[str, ...], page: Page) -> bool:
    return bool(BUTTON_ROLES.get(page, frozenset()) & set(roles))


class Refused(Exception):
    """The PDP did not permit the page (deny or step_up): shown as a 403 with the reasons."""

    def __init__(self, decision: Decision | None, reasons: list[str]) -> None:
        self.decision = decision
        self.reasons = reasons
        super().__init__(", ".join(reasons))


def network_zone(ip: str | None) -> str:
    """Loopback and private addresses are the bureau's network; anything else is the internet."""
    try:
        addr = ipaddress.ip_address(ip or "")
    except ValueError:
        return "internet"
    return "internal" if addr.is_loopback or addr.is_private else "internet"


def authorize(point, token: str, page: Page, *, device_id: str, managed: bool, ip: str | None,  # noqa: ANN001
              citizen_ref: str | None = None, record_id: str | None = None) -> Decision:
    """The PDP's decision for this page; raises :class:`Refused` unless it permits."""
    try:
        request = DecisionRequest.model_validate({
            "subject_token": token,
            "device": {"id": device_id, "managed": managed, "compliant": managed},
            "context": {"ip": ip if _is_ip(ip) else None, "network_zone": network_zone(ip), "channel": "console"},
            "resource": {"type": "console", "dataset": page.dataset, "citizen_ref": citizen_ref,
                         "record_id": record_id, "fields": [], "classification": "internal"},
            "action": page.action,
            "purpose": {"code": page.purpose},
        })
    except ValidationError:
        raise Refused(None, ["malformed_request"]) from None
    decision = point.decide(request, caller="ztcp-console")
    if decision.effect != "permit":
        raise Refused(decision, list(decision.reasons) or [decision.effect])
    return decision


def _is_ip(ip: str | None) -> bool:
    try:
        ipaddress.ip_address(ip or "")
        return True
    except ValueError:
        return False
