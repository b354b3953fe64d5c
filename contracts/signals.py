"""The signal set: what the PDP infers about a request beyond the request itself.

``pdp.signals.SignalHistory.compute`` returns one per decision; it becomes ``input.signals`` of the
policy input and is logged with the decision (so a simulation replays exactly what the PDP saw).
The policy turns signals into named risk factors (``policy/rego/ztcp/risk.rego``).

A ``typing.TypedDict``: the decide path builds a plain dict and pays nothing for the contract.
``contracts.conformance.problems(value, Signals)`` checks a value against it (tests, diagnostics).
"""

from __future__ import annotations

from typing import TypedDict


class Signals(TypedDict):
    auth_strength: int  # password 1 < OTP 2 < FIDO2 / citizen certificate 3 (0: unknown method)
    token_age_s: int  # seconds since the subject authenticated
    recent_denies_1h: int
    failed_step_ups_1h: int  # step-ups not completed within 5 minutes, last hour
    device_first_seen: bool  # first decision for this subject on this device
    off_hours: bool  # outside office hours or on a holiday, bureau time zone
    holiday: bool
    local_hour: int  # 0-23, bureau time zone
    impossible_travel: bool  # > 900 km/h over > 100 km since the subject's previous decision
    travel_speed_kmh: float
    request_rate_1m: int  # this request included
    distinct_citizens_10m: int  # this request's citizen included
    distinct_citizens_1h: int
    first_dataset_access: bool  # first permitted access to this dataset by this subject
    self_record: bool  # the subject's own citizen record
