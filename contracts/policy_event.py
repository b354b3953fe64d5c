"""The policy administration event: every propose, approve, publish, emergency publish,
rollback and refused attempt, with actor, revision, digest and reason.

They are written in the same SQLite transaction as the state change they describe (see
``policy/revisions.py``), so the audit trail cannot miss an action that took effect. The SIEM reads them
with :meth:`policy.RevisionStore.iter_since` (kind ``policy``); ``policy.emergency_publish`` and
``policy.refused`` are the alert-worthy types.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

PolicyEventType = Literal[
    "policy.propose",
    "policy.approve",
    "policy.publish",
    "policy.emergency_publish",
    "policy.rollback",
    "policy.refused",
]
POLICY_EVENT_TYPES: tuple[str, ...] = get_args(PolicyEventType)


class PolicyAdminEvent(BaseModel):
    """One lifecycle event. ``cursor`` orders events; pass the last one seen to ``iter_since``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["policy"] = "policy"
    event_id: str
    cursor: int
    time: str  # RFC 3339, UTC
    type: PolicyEventType
    actor: str
    revision: str | None = None
    digest: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
