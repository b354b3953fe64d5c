"""The alert administration event: an analyst acknowledging, closing, reopening or commenting on an
alert (the SIEM writes it, and reads it back like any other event: an analyst closing an alert
about themselves is itself an alert).

``self_review`` is true when the actor is among the people the alert concerns (its group key or the
actors/subjects of its evidence). A comment's text stays with the alert; the event carries only
that there was one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

import uuid_utils
from pydantic import BaseModel, ConfigDict, Field

AlertAdminType = Literal["alert.acknowledge", "alert.close", "alert.reopen", "alert.comment"]
ALERT_ADMIN_TYPES: tuple[str, ...] = get_args(AlertAdminType)


class AlertAdminEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str = Field(default_factory=lambda: str(uuid_utils.uuid7()))
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    type: AlertAdminType
    actor: str
    alert_id: str
    rule_id: str
    level: str
    from_status: str | None = None
    to_status: str | None = None
    self_review: bool = False
