"""Operators' actions at the command line go through the PDP like every other action."""

from __future__ import annotations

import socket

from contracts.decision import Decision, DecisionRequest
from server.settings import Settings


def decide_operation(settings: Settings, token: str, *, dataset: str, action: str, purpose: str,
                     record_id: str | None = None) -> Decision:
    """May the operator whose verified ``token`` this is do ``action`` on ``dataset`` now?

    The device is this host (the CLI runs where ztcp's keyring is, on the bureau's server), on the
    internal network; the policy still weighs the operator's sign-in, role, time and history."""
    from server.runtime import Runtime

    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:100] or "localhost"
    request = DecisionRequest.model_validate({
        "subject_token": token, "device": {"id": f"host:{host}", "managed": True, "compliant": True},
        "context": {"network_zone": "internal", "channel": "cli"},
        "resource": {"type": "operation", "dataset": dataset, "record_id": record_id, "fields": [],
                     "classification": "internal"},
        "action": action, "purpose": {"code": purpose}})
    runtime = Runtime(settings)
    try:
        return runtime.point.decide(request, caller="ztcp-cli")
    finally:
        runtime.close()
