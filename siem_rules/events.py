"""The four kinds of input event the engine consumes, and how each is flattened into Sigma fields.

The engine knows no producer; it knows their contracts (``contracts/``, the only package it imports):

* ``provenance``: :class:`contracts.provenance_event.ProvenanceEvent` itself, as the ledger stores
  it, plus the ledger's ``seq`` and ``leaf_hash`` (what ``Ledger.events_after`` and ``ztcp audit
  export --format jsonl`` produce). Validated by the contract, so the SIEM accepts exactly what the
  ledger accepts: a raw national ID anywhere is refused, an unknown field too.
* ``decision``: the decision-log entry (:class:`contracts.decision_log.DecisionLogEntry`, OPA
  field names). Read through :class:`DecisionEvent`, which types the parts rules use and lets the
  rest through; tests check it against the contract on entries written by the real PDP.
* ``key`` and ``policy``: the key-audit and policy-administration events (types from
  :mod:`contracts.key_event` and :mod:`contracts.policy_event`).

Sigma field names are the events' own JSON paths (``input.subject.id``, ``result.effect``,
``via.ip``), so a rule reads like the event an analyst looks at; a few name a part of an object
(``actor`` is the actor's id, ``recipient`` the recipient's id, ``bundles.revision`` the ``ztcp``
bundle's revision, ``changed`` the fields a ``pii.update`` changed). ``FIELDS`` maps each to the JSON
path it is read from and the flat SQLite column it is stored in; the processing pipelines
(pipeline.py) are built from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from contracts.alert_event import AlertAdminType
from contracts.key_event import KeyAuditType
from contracts.national_id import CITIZEN_REF_PATTERN
from contracts.policy_event import PolicyEventType
from contracts.provenance_event import ProvenanceEvent

from .errors import EventError

KINDS = ("decision", "provenance", "key", "policy", "alert")
# Sigma logsource service of each kind (the issue names them decision|provenance|keymgmt|policy).
SERVICE_OF_KIND = {"decision": "decision", "provenance": "provenance", "key": "keymgmt", "policy": "policy",
                   "alert": "alert"}
KIND_OF_SERVICE = {v: k for k, v in SERVICE_OF_KIND.items()}
# What the ledger adds to the event it stores (``Ledger.events_after``, ``ztcp audit export``).
LEDGER_FIELDS = ("seq", "leaf_hash")
_LEAF_HASH = re.compile(r"^[0-9a-f]{64}$")

_CITIZEN_REF = re.compile(CITIZEN_REF_PATTERN)


def _check_ref(value: str | None) -> str | None:
    if value is not None and not _CITIZEN_REF.match(value):
        # Never echo the value: it may be exactly the raw identifier we refuse to store.
        raise ValueError("citizen_ref must be a reference 'cr_' + 52 base32 characters (raw identifiers are refused)")
    return value


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("must be RFC 3339 text with a UTC offset")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)


# ---- decision (contracts.decision_log.DecisionLogEntry) ------------------------------------------
# The parts rules rely on, typed; everything else passes. A refused subject token logs only
# subject.id (null), resource and action, so the rest has defaults.


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


class DecisionSignals(_Open):
    """The signals rules use (contracts.signals.Signals has them all)."""

    off_hours: bool | None = None
    impossible_travel: bool | None = None
    device_first_seen: bool | None = None
    distinct_citizens_1h: int | None = None
    self_record: bool | None = None


class DecisionInput(_Open):
    subject: Subject
    device: Device = Field(default_factory=Device)
    context: Context = Field(default_factory=Context)
    resource: Resource = Field(default_factory=Resource)
    action: str
    purpose: DecisionPurpose = Field(default_factory=DecisionPurpose)
    signals: DecisionSignals = Field(default_factory=DecisionSignals)


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


class BundleRef(_Open):
    revision: str | None = None
    digest: str | None = None


class Bundles(_Open):
    """OPA's shape: bundle name → its revision; the policy is the ``ztcp`` bundle."""

    ztcp: BundleRef | None = None


class DecisionEvent(_Open):
    decision_id: str
    timestamp: Rfc3339
    path: str | None = None
    input: DecisionInput
    result: DecisionResult
    bundles: Bundles = Field(default_factory=Bundles)
    metrics: dict[str, Any] = Field(default_factory=dict)


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


# ---- alert administration events (the SOC's own actions, read back from the SIEM store) ---------------


class AlertEvent(_Open):
    event_id: str
    time: Rfc3339
    type: AlertAdminType
    actor: str
    alert_id: str
    rule_id: str
    level: str
    from_status: str | None = None
    to_status: str | None = None
    self_review: bool = False


MODELS: dict[str, type[BaseModel]] = {
    "decision": DecisionEvent,
    "provenance": ProvenanceEvent,  # the contract itself (see validate)
    "key": KeyEvent,
    "policy": PolicyEvent,
    "alert": AlertEvent,
}


# ---- flattening ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One Sigma field: where it is read from in the event, its SQLite column and SQL type."""

    field: str  # the Sigma field name rules use
    column: str
    sqltype: str = "TEXT"  # TEXT (NOCASE), INTEGER (booleans 1/0, counts), REAL
    derived: bool = False  # computed at ingestion (local time), not present in the event
    path: str | None = None  # the JSON path in the event, when it is not the field name itself
    only_type: str | None = None  # set only on events of this ``type`` (``changed``: pii.update)

    @property
    def source(self) -> str:
        return self.path or self.field


def _cols(*spec: tuple[str, str] | tuple[str, str, str] | Column) -> tuple[Column, ...]:
    return tuple(s if isinstance(s, Column) else Column(*s) for s in spec)


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
        ("result.effect", "effect"),
        ("result.risk.score", "risk_score", "REAL"),
        ("result.risk.level", "risk_level"),
        ("result.risk.factors", "risk_factors"),
        ("result.reasons", "reasons"),
        ("result.obligations", "obligations"),
        ("result.permitted_fields", "permitted_fields"),
        Column("bundles.revision", "revision", path="bundles.ztcp.revision"),
    )
    + _LOCAL,
    "provenance": _cols(
        ("event_id", "event_id"),
        ("time", "time"),
        ("type", "type"),
        Column("actor", "actor", path="actor.id"),
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
        Column("recipient", "recipient", path="recipient.id"),
        # A pii.update names the fields it changed in ``fields``; ``changed`` is that list on updates only.
        Column("changed", "changed", path="fields", only_type="pii.update"),
        ("bank_account_ref", "bank_account_ref"),
        ("intermediary_ref", "intermediary_ref"),
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
    + _LOCAL,    "alert": _cols(
        ("event_id", "event_id"),
        ("time", "time"),
        ("type", "type"),
        ("actor", "actor"),
        ("alert_id", "alert_id"),
        ("rule_id", "rule_id"),
        ("level", "level"),
        ("from_status", "from_status"),
        ("to_status", "to_status"),
        ("self_review", "self_review", "INTEGER"),
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

TIME_FIELD = {"decision": "timestamp", "provenance": "time", "key": "time", "policy": "time", "alert": "time"}
ID_FIELD = {"decision": "decision_id", "provenance": "event_id", "key": "event_id", "policy": "event_id",
            "alert": "event_id"}
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
        self._paths = [tuple(c.source.split(".")) for c in self.columns]
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
            elif col.only_type is not None and event.get("type") != col.only_type:
                values.append(None)
            else:
                values.append(_scalar(_get(event, path)))
        return (values[0], when.timestamp(), *values[1:])


def normalise(kind: str, event: dict[str, Any]) -> dict[str, Any]:
    """Expand the provenance contract's shorthands so every path in ``FIELDS`` reads the same shape.

    :class:`contracts.provenance_event.ProvenanceEvent` accepts ``"actor": "emp-1"`` for
    ``{"id": "emp-1"}`` and ``"purpose": "code"`` for ``{"code": "code"}``; the ledger always stores
    the objects. Returns ``event`` itself when nothing changes (never modifies it).
    """
    if kind != "provenance":
        return event
    actor, purpose = event.get("actor"), event.get("purpose")
    if not (isinstance(actor, str) or isinstance(purpose, str)):
        return event
    out = dict(event)
    if isinstance(actor, str):
        out["actor"] = {"id": actor}
    if isinstance(purpose, str):
        out["purpose"] = {"code": purpose}
    return out


def _error(where: str, kind: str, exc: ValidationError) -> EventError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    # pydantic's message only; never the input value (it may be personal data).
    return EventError(where, f"{kind} event field {loc}: {msg}" if loc else f"{kind} event: {msg}")


def _serialisable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _validate_provenance(event: dict[str, Any], where: str) -> None:
    """The ledger's event model, plus what the ledger adds to what it stores (``seq``, ``leaf_hash``)."""
    for key in ("event_id", "time"):  # defaults for a producer making one; a recorded event has both
        if key not in event:
            raise EventError(where, f"provenance event field {key}: missing (a recorded event has it)")
    body = event
    if "seq" in event or "leaf_hash" in event:
        seq, leaf_hash = event.get("seq"), event.get("leaf_hash")
        if "seq" in event and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise EventError(where, "provenance event field seq: the ledger's sequence number, an integer >= 0")
        if "leaf_hash" in event and not (isinstance(leaf_hash, str) and _LEAF_HASH.match(leaf_hash)):
            raise EventError(where, "provenance event field leaf_hash: must be 64 lowercase hex digits (SHA-256)")
        body = {k: v for k, v in event.items() if k not in LEDGER_FIELDS}
    try:
        raw = orjson.dumps(body)
    except TypeError:  # e.g. a lone surrogate: name the field, never the value
        field = next((k for k, v in body.items() if not _serialisable(v)), "?")
        raise EventError(where, f"provenance event field {field}: not valid JSON text (invalid Unicode?)") from None
    try:
        # JSON in, as the ledger reads its own events (the contract is strict: no coercion).
        ProvenanceEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise _error(where, "provenance", exc) from None


def validate(kind: str, event: dict[str, Any], where: str = "event") -> dict[str, Any]:
    """Validate one event against its contract; returns it unchanged (JSON form) or raises EventError."""
    model = MODELS.get(kind)
    if model is None:
        raise EventError(where, f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    if not isinstance(event, dict):
        raise EventError(where, f"{kind} event: expected a JSON object")
    if kind == "provenance":
        _validate_provenance(event, where)
        return event
    try:
        model.model_validate(event)
    except ValidationError as exc:
        raise _error(where, kind, exc) from None
    return event
