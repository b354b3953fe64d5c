"""The gateway's answers that are not data, as RFC 9457 problems a client can act on.

Refusals name reason codes and fields, never values; outages say what is down and carry
``Retry-After``. None of them carries plaintext: they are raised before any is produced.
"""

from __future__ import annotations

import logging

import keymgmt
from contracts.decision import Decision
from gateway.obligations import step_up_max_age, step_up_methods
from pdp.problems import Problem

log = logging.getLogger("ztcp.gateway")


def invalid(field: str, message: str) -> Problem:
    return Problem(422, "Invalid request", f"invalid field(s): {field}",
                   errors=[{"field": field, "message": message}])


def step_up(decision: Decision) -> Problem:
    acr = " ".join(step_up_methods(decision))
    max_age = step_up_max_age(decision)
    fresh = f', max_age="{max_age}"' if max_age is not None else ""
    extra = {"max_age": max_age} if max_age is not None else {}
    return Problem(401, "Step-up authentication required",
                   f"sign in again with {acr} to continue", type_="urn:ztcp:problem:step-up",
                   headers={"WWW-Authenticate": (
                       'Bearer realm="ztcp", error="insufficient_user_authentication", '
                       f'error_description="stronger authentication required", acr_values="{acr}"{fresh}')},
                   decision_id=decision.decision_id, reasons=decision.reasons, required_method=acr, **extra)


def pdp_down(decision: Decision) -> Problem:
    """The PDP could not log or vouch for the decision (its database is down): an outage, not a refusal."""
    return Problem(503, "Decision point unavailable", "the access could not be decided and logged; no data is returned",
                   type_="urn:ztcp:problem:pdp-unavailable", headers={"Retry-After": "2"},
                   decision_id=decision.decision_id, reasons=decision.reasons)


def deny(decision: Decision) -> Problem:
    return Problem(403, "Denied by policy", "; ".join(decision.reasons), type_="urn:ztcp:problem:denied",
                   decision_id=decision.decision_id, reasons=decision.reasons)


def refused(exc: keymgmt.DecryptRefused, decision: Decision) -> Problem:
    if exc.reason == "ledger_unavailable":
        return Problem(503, "Provenance ledger unavailable",
                       "the access could not be recorded, so no data is returned",
                       type_="urn:ztcp:problem:ledger-unavailable", decision_id=decision.decision_id,
                       headers={"Retry-After": "5"})
    return Problem(403, "Refused by the decryption gate", exc.reason, type_="urn:ztcp:problem:refused",
                   decision_id=decision.decision_id, reasons=[exc.reason])


def db_down(exc: Exception) -> Problem:
    log.warning("protected database unavailable: %s", type(exc).__name__)  # no statement, no values
    return Problem(503, "Protected database unavailable", "no data is returned", headers={"Retry-After": "5"},
                   type_="urn:ztcp:problem:database-unavailable")


def provider_down(decision: Decision) -> Problem:
    return Problem(503, "Key provider unavailable", "no data is returned", headers={"Retry-After": "5"},
                   type_="urn:ztcp:problem:key-provider-unavailable", decision_id=decision.decision_id)
