"""The PDP's HTTP-only models: batches of decision requests. The request and decision themselves
are shared contracts (:mod:`contracts.decision`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contracts.decision import Decision, DecisionRequest

MAX_BATCH = 1000


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    requests: list[DecisionRequest] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResponse(BaseModel):
    decisions: list[Decision]


def risk_level(score: int) -> str:
    """Fallback level when the policy does not state one (thresholds mirror the default pack)."""
    if score >= 85:
        return "critical"
    if score >= 60:
        return "high"
    if score >= 30:
        return "medium"
    return "low"
