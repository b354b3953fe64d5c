"""The obligations a decision attaches, and how this PEP fulfils them (or refuses to act: fail closed)."""

from __future__ import annotations

from typing import Any

from contracts.decision import Decision
from pdp.problems import Problem

# Obligations this PEP knows how to fulfil. Anything else: refuse (a PEP must not ignore an
# obligation it does not understand).
KNOWN_OBLIGATIONS = frozenset({"record_provenance", "mask", "max_rows", "alert"})


def step_up_methods(decision: Decision) -> list[str]:
    methods = [str(o.get("method")) for o in decision.obligations if o.get("type") == "step_up" and o.get("method")]
    return list(dict.fromkeys(methods)) or ["mfa"]


def step_up_max_age(decision: Decision) -> int | None:
    """The freshness the policy wants of the step-up sign-in (RFC 9470 ``max_age``), if it says."""
    ages = [o["max_age"] for o in decision.obligations
            if o.get("type") == "step_up" and isinstance(o.get("max_age"), int) and o["max_age"] >= 0]
    return min(ages) if ages else None


def check_obligations(decision: Decision) -> None:
    unknown = sorted({str(o.get("type")) for o in decision.obligations} - KNOWN_OBLIGATIONS)
    if unknown:
        # Fail closed: an obligation this PEP cannot fulfil means no access.
        raise Problem(403, "Denied: unfulfillable obligation",
                      f"the gateway cannot fulfil obligation(s) {', '.join(unknown)}",
                      type_="urn:ztcp:problem:denied", decision_id=decision.decision_id,
                      reasons=[f"unfulfillable_obligation:{t}" for t in unknown])
    max_rows(decision)


def max_rows(decision: Decision) -> int | None:
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


def applied(decision: Decision, returned: set[str], event_id: str | None, rows: int) -> list[dict[str, Any]]:
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
