"""The four kinds of input event the engine consumes, and how each is flattened into Sigma fields.

The engine is decoupled from the packages that produce these events: it only depends on these
schemas (documented in siem_rules/README.md). Models accept extra fields (producers extend,
never rename), but the fields rules rely on are typed, and ``citizen_ref`` must be a reference,
never a raw national ID.

Sigma field names are the events' own JSON paths (``input.subject.id``, ``result.effect``,
``via.ip``), so a rule reads like the event an analyst looks at. ``FIELDS`` maps each to the
flat SQLite column it is stored in; the processing pipelines (pipeline.py) are built from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from contracts.key_event import KeyAuditType
from contracts.policy_event import PolicyEventType

from .errors import EventError

KINDS = ("decision", "provenance", "key", "policy")
# Sigma logsource service of each kind (the issue names them decision|provenance|keymgmt|policy).
SERVICE_OF_KIND = {"decision": "decision", "provenance": "provenance", "key": "keymgmt", "policy": "policy"}
KIND_OF_SERVICE = {v: k for k, v in SERVICE_OF_KIND.items()}

_CITIZEN_REF = re.compile(r"^cr_[A-Za-z0-9]{4,}$")


def _check_ref(value: str | None) -> str | None:
    if value is not None and not _CITIZEN_REF.match(value):
        # Never echo the value: it may be exactly the raw identifier we refuse to store.
        raise ValueError("citizen_ref must be a reference 'cr_…' (raw identifiers are refused)")
    return value


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("must be RFC 3339 text with a UTC offset")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- decision (OPA decision-log field names) ---------------------------------------------------


class Auth(_Open):
    method: str | None = None
    mfa: bool | None = None


class Subject(_Open):
    id: str | None = None  # null when the subject token was refused (the probing rules want those)
    type: str | None = None
    roles: list[str] = Field(default_factory=list)
    org_unit: str | None = None
    auth: Auth = Field(default_factory=Auth)


class Device(_Open):
    id: str | None = None
    managed: bool | None = None
    compliant: bool | None = None


class Geo(_Open):
    lat: float | None = None
    lon: float | None = None
    country: str | None = None


class Context(_Open):
    ip: str | None = None
    network_zone: str | None = None
    channel: str | None = None
    time: str | None = None
    geo: Geo | None = None  # the PDP logs null when the PEP sent no location


class Resource(_Open):
    type: str | None = None
    dataset: str | None = None
    record_id: str | None = None
    citizen_ref: str | None = None
    fields: list[str] = Field(default_factory=list)
    classification: str | None = None

    @field_validator("citizen_ref")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        return _check_ref(v)


class DecisionPurpose(_Open):
    code: str | None = None
    case_id: str | None = None
    legal_basis: str | None = None
    consent_id: str | None = None
    break_glass: bool = False
    justification_present: bool | None = None


class Signals(_Open):
    off_hours: bool | None = None
    impossible_travel: bool | None = None
    device_first_seen: bool | None = None
    distinct_citizens_1h: int | None = None
    self_record: bool | None = None
    related_party: bool | None = None


class DecisionInput(_Open):
    subject: Subject
    device: Device = Field(default_factory=Device)
    context: Context = Field(default_factory=Context)
    resource: Resource = Field(default_factory=Resource)
    action: str
    purpose: DecisionPurpose = Field(default_factory=DecisionPurpose)
    signals: Signals = Field(default_factory=Signals)


class RiskFactor(_Open):
    name: str
    points: float = 0


class Risk(_Open):
    score: float = 0
    level: str | None = None
    factors: list[RiskFactor] = Field(default_factory=list)


class DecisionResult(_Open):
    effect: Literal["permit", "deny", "step_up"]
    risk: Risk = Field(default_factory=Risk)
    reasons: list[str] = Field(default_factory=list)
    obligations: list[dict[str, Any] | str] = Field(default_factory=list)
    permitted_fields: list[str] = Field(default_factory=list)


class Bundles(_Open):
    revision: str | None = None


class DecisionEvent(_Open):
    decision_id: str
    timestamp: Rfc3339
    path: str | None = None
    input: DecisionInput
    result: DecisionResult
    bundles: Bundles = Field(default_factory=Bundles)
    metrics: dict[str, Any] = Field(default_factory=dict)


# ---- provenance (docs/design.md, Contracts) ----------------------------------------------------------------


class Via(_Open):
    system: str | None = None
    channel: str | None = None
    ip: str | None = None


class Purpose(_Open):
    code: str | None = None
    case_id: str | None = None
    legal_basis: str | None = None
    consent_id: str | None = None


class ProvenanceEvent(_Open):
    event_id: str
    time: Rfc3339
    type: str = Field(pattern=r"^(pii\.(read|search|export|disclose|update|denied)|audit\.[a-z_.]+)$")
    actor: str
    via: Via = Field(default_factory=Via)
    citizen_ref: str | None = None
    dataset: str | None = None
    record_id: str | None = None
    fields: list[str] = Field(default_factory=list)
    purpose: Purpose = Field(default_factory=Purpose)
    decision_id: str | None = None
    recipient: str | None = None
    derived_from: list[str] = Field(default_factory=list)
    seq: int | None = None
    leaf_hash: str | None = None
    # pii.update: names of changed fields, and a blind index of a new bank account (never the value).
    changed: list[str] = Field(default_factory=list)
    bank_account_ref: str | None = None

    @field_validator("citizen_ref")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        return _check_ref(v)


# ---- key audit events ----------------------------------------------------------------------------


class KeyEvent(_Open):
    event_id: str
    time: Rfc3339
    type: KeyAuditType
    actor: str
    key_name: str
    key_version: int | None = None
    dataset: str | None = None
    count: int | None = None
    reason: str | None = None


# ---- policy administration events ----------------------------------------------------------------


class PolicyEvent(_Open):
    event_id: str
    time: Rfc3339
    type: Literal[PolicyEventType, "audit.verify_failed"]
    actor: str
    revision: str | None = None
    digest: str | None = None
    reason: str | None = None


MODELS: dict[str, type[BaseModel]] = {
    "decision": DecisionEvent,
    "provenance": ProvenanceEvent,
    "key": KeyEvent,
    "policy": PolicyEvent,
}


# ---- flattening ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One Sigma field: its JSON path in the event, its SQLite column and SQL type."""

    field: str
    column: str
    sqltype: str = "TEXT"  # TEXT (NOCASE), INTEGER (booleans 1/0, counts), REAL
    derived: bool = False  # computed at ingestion (local time), not present in the event


def _cols(*spec: tuple[str, str] | tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in spec)


_LOCAL = _cols(
    # Local wall-clock facts in the configured time zone (Asia/Taipei by default) so rules can say
    # "off hours" or "outside a change window" with plain Sigma and configured lists.
    ("local.hour", "local_hour"),
    ("local.weekday", "local_weekday"),
    ("local.date", "local_date"),
    ("local.slot", "local_slot"),
)
_LOCAL = tuple(Column(c.field, c.column, c.sqltype, True) for c in _LOCAL)

FIELDS: dict[str, tuple[Column, ...]] = {
    "decision": _cols(
        ("decision_id", "event_id"),
        ("timestamp", "time"),
        ("path", "path"),
        ("input.subject.id", "subject_id"),
        ("input.subject.type", "subject_type"),
        ("input.subject.roles", "subject_roles"),
        ("input.subject.org_unit", "org_unit"),
        ("input.subject.auth.method", "auth_method"),
        ("input.subject.auth.mfa", "auth_mfa", "INTEGER"),
        ("input.device.id", "device_id"),
        ("input.device.managed", "device_managed", "INTEGER"),
        ("input.device.compliant", "device_compliant", "INTEGER"),
        ("input.context.ip", "ip"),
        ("input.context.network_zone", "network_zone"),
        ("input.context.channel", "channel"),
        ("input.context.geo.country", "geo_country"),
        ("input.resource.type", "resource_type"),
        ("input.resource.dataset", "dataset"),
        ("input.resource.record_id", "record_id"),
        ("input.resource.citizen_ref", "citizen_ref"),
        ("input.resource.fields", "fields"),
        ("input.resource.classification", "classification"),
        ("input.action", "action"),
        ("input.purpose.code", "purpose_code"),
        ("input.purpose.case_id", "case_id"),
        ("input.purpose.legal_basis", "legal_basis"),
        ("input.purpose.consent_id", "consent_id"),
        ("input.purpose.break_glass", "break_glass", "INTEGER"),
        ("input.purpose.justification_present", "justification_present", "INTEGER"),
        ("input.signals.off_hours", "sig_off_hours", "INTEGER"),
        ("input.signals.impossible_travel", "sig_impossible_travel", "INTEGER"),
        ("input.signals.device_first_seen", "sig_device_first_seen", "INTEGER"),
        ("input.signals.distinct_citizens_1h", "sig_distinct_citizens_1h", "INTEGER"),
        ("input.signals.self_record", "sig_self_record", "INTEGER"),
        ("input.signals.related_party", "sig_related_party", "INTEGER"),
        ("result.effect", "effect"),
        ("result.risk.score", "risk_score", "REAL"),
        ("result.risk.level", "risk_level"),
        ("result.risk.factors", "risk_factors"),
        ("result.reasons", "reasons"),
        ("result.obligations", "obligations"),
        ("result.permitted_fields", "permitted_fields"),
        ("bundles.revision", "revision"),
    )
    + _LOCAL,
    "provenance": _cols(
        ("event_id", "event_id"),
        ("time", "time"),
        ("type", "type"),
        ("actor", "actor"),
        ("via.system", "via_system"),
        ("via.channel", "via_channel"),
        ("via.ip", "via_ip"),
        ("citizen_ref", "citizen_ref"),
        ("dataset", "dataset"),
        ("record_id", "record_id"),
        ("fields", "fields"),
        ("purpose.code", "purpose_code"),
        ("purpose.case_id", "case_id"),
        ("purpose.legal_basis", "legal_basis"),
        ("purpose.consent_id", "consent_id"),
        ("decision_id", "decision_id"),
        ("recipient", "recipient"),
        ("changed", "changed"),
        ("bank_account_ref", "bank_account_ref"),
        ("seq", "seq", "INTEGER"),
    )
    + _LOCAL,
    "key": _cols(
        ("event_id", "event_id"),
        ("time", "time"),
        ("type", "type"),
        ("actor", "actor"),
        ("key_name", "key_name"),
        ("key_version", "key_version", "INTEGER"),
        ("dataset", "dataset"),
        ("count", "count", "INTEGER"),
        ("reason", "reason"),
    )
    + _LOCAL,
    "policy": _cols(
        ("event_id", "event_id"),
        ("time", "time"),
        ("type", "type"),
        ("actor", "actor"),
        ("revision", "revision"),
        ("digest", "digest"),
        ("reason", "reason"),
    )
    + _LOCAL,
}

# Array fields: stored "|a|b|"; the sqlite pipeline turns ``field: a`` into a membership test.
LIST_FIELDS = frozenset(
    {
        "input.subject.roles",
        "input.resource.fields",
        "result.risk.factors",
        "result.reasons",
        "result.obligations",
        "result.permitted_fields",
        "fields",
        "changed",
    }
)

TIME_FIELD = {"decision": "timestamp", "provenance": "time", "key": "time", "policy": "time"}
ID_FIELD = {"decision": "decision_id", "provenance": "event_id", "key": "event_id", "policy": "event_id"}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def column_of(kind: str, field: str) -> str | None:
    for c in FIELDS[kind]:
        if c.field == field:
            return c.column
    return None


def parse_time(value: Any) -> datetime:
    """RFC 3339 text or datetime → aware UTC datetime; a naive time is refused (ambiguous)."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("time is not RFC 3339") from None
    else:
        raise ValueError("time is missing or not RFC 3339 text")
    if dt.tzinfo is None:
        raise ValueError("time has no UTC offset")
    return dt.astimezone(UTC)


def _get(event: dict[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = event
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
        if cur is None:
            return None
    return cur


def _scalar(value: Any) -> Any:
    if value is None or value == "":
        return None  # an empty string is "absent": rules test absence with `field: null`
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, list):
        # Lists are stored "|a|b|" so `|contains: '|a|'` is exact and plain `contains` also works.
        names = []
        for item in value:
            if isinstance(item, dict):  # obligations / risk factors: keep their names only
                item = item.get("type") or item.get("name")
            if item is not None:
                names.append(str(item))
        return "|" + "|".join(names) + "|" if names else None
    if isinstance(value, dict):
        return None
    return value


class Flattener:
    """Turns an event dict of one kind into a row tuple (event_id, ts, *columns)."""

    def __init__(self, kind: str, tz: str = "Asia/Taipei") -> None:
        if kind not in MODELS:
            raise EventError("event", f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
        self.kind = kind
        self.tz = ZoneInfo(tz)
        self.columns = FIELDS[kind]
        self._paths = [tuple(c.field.split(".")) for c in self.columns]
        self._time_field = TIME_FIELD[kind]

    def row(self, event: dict[str, Any]) -> tuple[Any, ...]:
        when = parse_time(event.get(self._time_field))
        local = when.astimezone(self.tz)
        derived = {
            "local_hour": f"{local.hour:02d}",
            "local_weekday": _WEEKDAYS[local.weekday()],
            "local_date": local.date().isoformat(),
            "local_slot": f"{_WEEKDAYS[local.weekday()]}-{local.hour:02d}",
        }
        values: list[Any] = []
        for col, path in zip(self.columns, self._paths, strict=True):
            if col.derived:
                values.append(derived[col.column])
            elif col.column == "time":
                values.append(when.isoformat().replace("+00:00", "Z"))
            else:
                values.append(_scalar(_get(event, path)))
        return (values[0], when.timestamp(), *values[1:])


def normalise(kind: str, event: dict[str, Any]) -> dict[str, Any]:
    """Map a live store's event onto the SIEM schema (returns ``event`` itself when nothing changes).

    The provenance ledger writes the contract's events (docs/design.md, Contracts): ``actor`` and
    ``recipient`` are objects (``{"id", "type", "roles", ...}``) and a ``pii.update`` names the
    changed fields in ``fields``. The rules match on the actor's and recipient's ids and on ``changed``.
    """
    if kind != "provenance":
        return event
    actor, recipient = event.get("actor"), event.get("recipient")
    update = event.get("type") == "pii.update" and "changed" not in event
    if not (isinstance(actor, dict) or isinstance(recipient, dict) or update):
        return event
    out = dict(event)
    if isinstance(actor, dict):
        out["actor"] = actor.get("id")
    if isinstance(recipient, dict):
        out["recipient"] = recipient.get("id")
    if update:
        out["changed"] = list(event.get("fields") or [])
    return out


def validate(kind: str, event: dict[str, Any], where: str = "event") -> dict[str, Any]:
    """Validate one event against its schema; returns it unchanged (JSON form) or raises EventError."""
    model = MODELS.get(kind)
    if model is None:
        raise EventError(where, f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    try:
        model.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or kind
        # pydantic's message only; never the input value (it may be personal data).
        raise EventError(where, f"{kind} event field {loc}: {first['msg']}") from None
    return event
