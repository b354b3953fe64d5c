"""Engine configuration: the lists rules refer to through Sigma placeholders, time zone, tuning.

Rules never hard-code who is protected or when changes are allowed; they say
``citizen_ref|expand: '%protected_citizens%'`` and the processing pipeline substitutes the list
configured here (pySigma ``ValueListPlaceholderTransformation``). An empty list is replaced by a
value no event carries, so the rule stays valid and simply matches nothing on that branch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.national_id import CITIZEN_REF_PATTERN

from .errors import SiemError

NEVER = "__ztcp_none__"  # stands in for an empty list
# A list entry that is not a reference would never match (and might be a pasted national ID).
CitizenRef = Annotated[str, Field(pattern=CITIZEN_REF_PATTERN)]


class SiemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    timezone: str = "Asia/Taipei"
    # ---- lists (placeholders) ----
    protected_citizens: list[CitizenRef] = Field(default_factory=list, description="VIP / protected citizen_refs")
    protected_record_custodians: list[str] = Field(
        default_factory=list, description="actors allowed to handle protected records"
    )
    employee_citizen_refs: list[CitizenRef] = Field(
        default_factory=list, description="citizen_refs of the bureau's own staff (co-worker records)"
    )
    batch_principals: list[str] = Field(
        default_factory=lambda: ["svc-*"], description="service principals exempt from human-behaviour rules"
    )
    off_hours: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4, 5, 6, 21, 22, 23], description="local hours counted as off-hours"
    )
    weekend_days: list[str] = Field(default_factory=lambda: ["sat", "sun"])
    change_window_slots: list[str] = Field(
        default_factory=lambda: [f"sat-{h:02d}" for h in range(1, 6)],
        description="recurring change windows as local weekday-hour slots, e.g. sat-02",
    )
    change_window_dates: list[str] = Field(default_factory=list, description="approved change dates (local YYYY-MM-DD)")
    account_change_purposes: list[str] = Field(
        default_factory=lambda: ["bank_account_change", "address_change"],
        description="purpose codes of a citizen-requested payout/address change",
    )
    external_recipients_allowed: list[str] = Field(
        default_factory=list, description="recipients exempt from the mass-disclosure rule"
    )
    # ---- analytics ----
    first_seen_learning_hours: float = Field(
        default=24.0, description="first-seen analytics only learn during this long after their first event"
    )
    # ---- behavioural baselines (analytics.BehaviourBaseline) ----
    baseline_days: int = Field(default=28, ge=7, le=365, description="rolling window of an employee's baseline")
    baseline_min_days: int = Field(
        default=10, ge=1, description="active days of history before an employee (or peer group) is scored")
    baseline_threshold: float = Field(
        default=6.0, gt=0, description="robust z-score (|x - median| / (1.4826 MAD)) that counts as unusual")
    baseline_min_ratio: float = Field(
        default=3.0, ge=1, description="and at least this many times the usual (median) value")
    baseline_min_excess: int = Field(
        default=40, ge=1, description="and at least this many more than the upper end of the usual range")
    baseline_rare_share: float = Field(
        default=0.05, ge=0, le=1, description="an hour or dataset used on fewer than this share of baseline days "
                                              "(by the employee and by their peers) is unusual for them")
    baseline_rare_min_events: int = Field(
        default=10, ge=1, description="requests at unusual hours / on unusual datasets in a day before it counts")
    baseline_min_peers: int = Field(default=3, ge=2, description="peers (same role and office) needed to compare")
    # ---- claims-fraud indicators (analytics.ClaimsFraudIndicators) ----
    payout_purposes: list[str] = Field(
        default_factory=lambda: ["monthly_payment", "benefit_payment"],
        description="purpose codes of a benefit payout (the payment run reading the payee)")
    account_change_payout_hours: float = Field(
        default=72.0, gt=0, description="a payout this soon after the payee's bank-account change is flagged")
    shared_account_min_claimants: int = Field(
        default=3, ge=2, description="claimants whose payouts currently go to one account before it is flagged")
    intermediary_window_days: int = Field(default=7, ge=1, description="window of an intermediary's claim share")
    intermediary_min_claims: int = Field(default=15, ge=1, description="claims in the window before it counts")
    intermediary_share_ratio: float = Field(
        default=4.0, ge=1, description="share of claims at least this many times the intermediary's usual share "
                                       "(or the median intermediary's, when it has no history)")
    # ---- alerts ----
    evidence_cap: int = Field(default=500, description="evidence ids kept per alert (count is exact)")
    default_suppression_seconds: int = 3600

    def placeholder_vars(self) -> dict[str, list[str]]:
        """Values for every ``%name%`` placeholder the pack may use (never an empty list)."""
        lists: dict[str, list[Any]] = {
            "protected_citizens": self.protected_citizens,
            "protected_record_custodians": self.protected_record_custodians,
            "employee_citizen_refs": self.employee_citizen_refs,
            "batch_principals": self.batch_principals,
            "off_hours": [f"{h:02d}" for h in self.off_hours],
            "weekend_days": self.weekend_days,
            "change_window_slots": self.change_window_slots,
            "change_window_dates": self.change_window_dates,
            "account_change_purposes": self.account_change_purposes,
            "external_recipients_allowed": self.external_recipients_allowed,
        }
        return {k: [str(v) for v in vals] or [NEVER] for k, vals in lists.items()}

    def with_overrides(self, overrides: dict[str, Any]) -> SiemConfig:
        return SiemConfig.model_validate({**self.model_dump(), **overrides})


def load_config(path: Path | None, timezone: str | None = None) -> SiemConfig:
    """Read a YAML config file (missing file = defaults); ``timezone`` (from Settings) wins."""
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise SiemError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SiemError(f"{path}: expected a mapping of settings")
        data = loaded or {}
    if timezone:
        data["timezone"] = timezone
    try:
        return SiemConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SiemError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
