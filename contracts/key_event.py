"""The key audit event: every key operation, refusal and bulk decryption (keymgmt writes, the SIEM reads).

``reason`` is a refusal code or a note, never a value or a raw identifier.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import uuid_utils
from pydantic import BaseModel, ConfigDict, Field

KeyAuditType = Literal[
    "key.create",
    "key.rotate",
    "key.rewrap",
    "key.retire",
    "key.decrypt",
    "key.decrypt_refused",
    "key.bulk_decrypt",
    "key.reencrypt",
]

class KeyAuditEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str = Field(default_factory=lambda: str(uuid_utils.uuid7()))
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    type: KeyAuditType
    actor: str = "system"
    key_name: str | None = None
    key_version: int | None = None
    dataset: str | None = None
    count: int | None = None
    reason: str | None = None
    decision_id: str | None = None
