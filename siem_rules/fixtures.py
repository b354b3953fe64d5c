"""Rule fixtures: ``match`` cases must raise an alert of the rule, ``nomatch`` cases must not.

A fixture file ``rules/fixtures/<rule>.yml``::

    config: {protected_citizens: ["cr:vip-1"]}    # optional overrides of SiemConfig
    match:
      - name: reads at night
        events:
          - kind: provenance
            at: "+0s"            # offset from 2026-03-04T10:00+08:00 (a Wednesday) or RFC 3339
            repeat: 3            # optional, with `every: 1m`; "{i}" in strings is the index
            event: {actor: u1, citizen_ref: "cr:wide-{i}"}   # dotted keys allowed
        expect: {alerts: 1, evidence: 3}   # optional, exact
    nomatch:
      - name: ...

Events are completed from a benign default of their kind — a complete event as its producer writes
it (the decision-log entry of ``contracts.decision_log``, the ledger's ``ProvenanceEvent``) — so a
fixture states only what the rule looks at, and every fixture event passes the producer's contract.
Each case runs in its own in-memory store with only that rule.

References are real-shaped: ``"cr:LABEL"`` becomes :func:`synthetic_citizen_ref` (``contracts.citizen_ref``
of a checksum-valid national ID derived from the label, under the fixed :data:`FIXTURE_KEY`) and
``"ba:LABEL"`` :func:`synthetic_bank_account_ref` (``"im:LABEL"`` :func:`synthetic_intermediary_ref`), in
events and in ``config`` lists alike.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import yaml

from contracts.bank_account import bank_account_ref
from contracts.intermediary import intermediary_ref
from contracts.national_id import citizen_ref, national_id_check_digit

from .config import SiemConfig
from .errors import FixtureError, SiemError
from .rulepack import AlertingRule, RulePack, parse_duration

BASE_TIME = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wed 10:00 Asia/Taipei
_TAIPEI = timezone(timedelta(hours=8))  # the PDP logs input.context.time in the bureau's zone
# Fixed and public on purpose: it only ever keys synthetic references (fixtures, the simulated week).
FIXTURE_KEY = b"ztcp-siem-fixtures-not-a-secret-0001"
_ID_LETTERS = "ABCDEFGHJKLMNPQRSTUVXYWZIO"
_IDS = len(_ID_LETTERS) * 2 * 10**7  # letter x sex digit (1, 2) x 7 digits: every checksum-valid ID
_SHORTHAND = re.compile(r"^(cr|ba|im):(\S+)$")


def synthetic_national_id(n: int) -> str:
    """The ``n``-th checksum-valid national ID (0 <= n < 520,000,000): distinct ``n``, distinct IDs."""
    if not 0 <= n < _IDS:
        raise ValueError(f"n must be in 0..{_IDS - 1}")
    letter, rest = divmod(n, 2 * 10**7)
    sex, digits = divmod(rest, 10**7)
    prefix = f"{_ID_LETTERS[letter]}{sex + 1}{digits:07d}"
    return prefix + national_id_check_digit(prefix)


def _index(label: str | int) -> int:
    if isinstance(label, int):
        return label % _IDS
    return int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:8], "big") % _IDS


@functools.lru_cache(maxsize=65_536)
def synthetic_citizen_ref(label: str | int) -> str:
    """A real-shaped ``citizen_ref`` for a label (``"vip-1"``) or an index: ``contracts.citizen_ref``
    of :func:`synthetic_national_id` under :data:`FIXTURE_KEY`. Deterministic; indexes never collide."""
    return citizen_ref(synthetic_national_id(_index(label)), FIXTURE_KEY)


@functools.lru_cache(maxsize=4_096)
def synthetic_bank_account_ref(label: str | int) -> str:
    """A real-shaped ``bank_account_ref`` for a label: ``contracts.bank_account_ref`` of a 14-digit
    account number derived from it, under :data:`FIXTURE_KEY`."""
    return bank_account_ref(f"700{_index(label):011d}", FIXTURE_KEY)


@functools.lru_cache(maxsize=4_096)
def synthetic_intermediary_ref(label: str | int) -> str:
    """A real-shaped ``intermediary_ref`` (a claim's agent or doctor) for a label, under :data:`FIXTURE_KEY`."""
    return intermediary_ref(f"LIC{_index(label):09d}", FIXTURE_KEY)


def expand_refs(value: Any) -> Any:
    """``"cr:LABEL"`` / ``"ba:LABEL"`` / ``"im:LABEL"`` → real-shaped references, anywhere in a value."""
    if isinstance(value, str):
        m = _SHORTHAND.match(value)
        if m is None:
            return value
        make = {"cr": synthetic_citizen_ref, "ba": synthetic_bank_account_ref, "im": synthetic_intermediary_ref}
        return make[m[1]](m[2])
    if isinstance(value, dict):
        return {k: expand_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_refs(v) for v in value]
    return value


DEFAULTS: dict[str, dict[str, Any]] = {
    # A complete decision-log entry as pdp.point.log_entry writes it (contracts.decision_log).
    "decision": {
        "decision_id": "",
        "timestamp": "",
        "ts": 0.0,
        "path": "ztcp/authz/decision",
        "input": {
            "subject": {
                "id": "emp-0001",
                "type": "employee",
                "roles": ["counter_clerk"],
                "org_unit": "taipei-1",
                "citizen_ref": None,
                "auth": {"method": "fido2", "mfa": True, "auth_time": None, "token_age_s": 900},
            },
            "device": {
                "id": "dev-0001",
                "managed": True,
                "compliant": True,
                "posture": {"baseline_ok": True, "edr_running": True, "disk_encrypted": True, "patch_age_days": 5},
            },
            "context": {
                "ip": "10.1.2.3",
                "network_zone": "internal",
                "channel": "counter",
                "time": "",
                "client_time": None,
                "geo": {"lat": 25.04, "lon": 121.56, "country": "TW"},
            },
            "resource": {
                "type": "insured_person",
                "dataset": "labour_insurance",
                "record_id": "rec-0001",
                "citizen_ref": synthetic_citizen_ref("citizen-1"),
                "fields": ["name", "address"],
                "classification": "personal",
            },
            "action": "read",
            "purpose": {
                "code": "benefit_claim",
                "case_id": "case-0001",
                "legal_basis": "LIA-art-20",
                "consent_id": None,
                "break_glass": False,
                "justification_present": False,
                "justification_length": 0,
            },
            "recipient": None,
            "signals": {
                "auth_strength": 3,
                "token_age_s": 900,
                "recent_denies_1h": 0,
                "failed_step_ups_1h": 0,
                "device_first_seen": False,
                "location_unknown": False,
                "off_hours": False,
                "holiday": False,
                "local_hour": 10,
                "impossible_travel": False,
                "travel_speed_kmh": 0.0,
                "request_rate_1m": 1,
                "distinct_citizens_10m": 1,
                "distinct_citizens_1h": 1,
                "first_dataset_access": False,
                "self_record": False,
            },
        },
        "result": {
            "effect": "permit",
            "risk": {"score": 10, "level": "low", "factors": []},
            "reasons": [],
            "obligations": [],
            "permitted_fields": ["name", "address"],
        },
        "bundles": {"ztcp": {"revision": "r1", "digest": "sha256:" + "0" * 64}},
        "labels": {"engine": "regorus-rvm"},
        "metrics": {"timer_rego_query_eval_ns": 120_000, "timer_server_handler_ns": 400_000},
        "requested_by": "counter-app",
    },
    # A ledger event (contracts.provenance_event.ProvenanceEvent); fixtures may say `actor: emp-1`.
    "provenance": {
        "event_id": "",
        "time": "",
        "type": "pii.read",
        "actor": {"id": "emp-0001", "type": "staff", "roles": ["counter_clerk"], "unit": "taipei-1"},
        "via": {"system": "counter-app", "channel": "counter", "ip": "10.1.2.3"},
        "citizen_ref": synthetic_citizen_ref("citizen-1"),
        "dataset": "labour_insurance",
        "record_id": "rec-0001",
        "fields": ["name", "address"],
        "purpose": {"code": "benefit_claim", "case_id": "case-0001", "legal_basis": "LIA-art-20"},
        "decision_id": "dec-0001",
        "effect": "permit",
    },
    "key": {
        "event_id": "",
        "time": "",
        "type": "key.decrypt",
        "actor": "svc-benefits",
        "key_name": "pii-fields",
        "key_version": 1,
        "dataset": "labour_insurance",
        "count": 10,
    },
    "policy": {
        "event_id": "",
        "time": "",
        "type": "policy.publish",
        "actor": "officer-1",
        "revision": "r2",
        "digest": "sha256:00",
    },
    "alert": {
        "event_id": "",
        "time": "",
        "type": "alert.close",
        "actor": "soc-1",
        "alert_id": "al_0000000000000000000a",
        "rule_id": "00000000-0000-0000-0000-000000000000",
        "level": "high",
        "from_status": "open",
        "to_status": "closed",
        "self_review": False,
    },
}
_TIME_KEY = {"decision": "timestamp", "provenance": "time", "key": "time", "policy": "time", "alert": "time"}
_ID_KEY = {"decision": "decision_id", "provenance": "event_id", "key": "event_id", "policy": "event_id",
           "alert": "event_id"}


def _undot(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        v = _undot(v) if isinstance(v, dict) else v
        parts = str(k).split(".")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        if isinstance(v, dict) and isinstance(cur.get(parts[-1]), dict):
            _merge(cur[parts[-1]], v)
        else:
            cur[parts[-1]] = v
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def _fmt(v: Any, i: int) -> Any:
    if isinstance(v, str) and "{i" in v:
        return v.format(i=i)
    if isinstance(v, dict):
        return {k: _fmt(x, i) for k, x in v.items()}
    if isinstance(v, list):
        return [_fmt(x, i) for x in v]
    return v


def _when(at: Any) -> datetime:
    if at is None:
        return BASE_TIME
    text = str(at)
    if text[:1] in "+-":
        secs = parse_duration(text[1:])
        return BASE_TIME + timedelta(seconds=secs if text[0] == "+" else -secs)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise FixtureError(f"bad time {text!r}") from None


def expand_events(specs: list[dict[str, Any]], prefix: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    n = 0
    for spec in specs:
        kind = spec.get("kind")
        if kind not in DEFAULTS:
            raise FixtureError(f"{prefix}: event kind must be one of {', '.join(DEFAULTS)}")
        start = _when(spec.get("at"))
        every = parse_duration(spec.get("every", "1m"))
        for i in range(int(spec.get("repeat", 1))):
            n += 1
            event = _merge(copy.deepcopy(DEFAULTS[kind]), expand_refs(_fmt(_undot(spec.get("event") or {}), i)))
            when = start + timedelta(seconds=i * every)
            if not event.get(_TIME_KEY[kind]):
                event[_TIME_KEY[kind]] = when.isoformat()
            if kind == "decision":  # the entry's other two clocks say the same instant
                event["ts"] = event["ts"] or when.timestamp()
                context = event["input"].get("context")
                if isinstance(context, dict) and not context.get("time"):
                    context["time"] = when.astimezone(_TAIPEI).isoformat()
            if not event.get(_ID_KEY[kind]):
                event[_ID_KEY[kind]] = f"{prefix}-{n:05d}"
            out.append((kind, event))
    return out


@dataclass
class CaseResult:
    rule: str
    expectation: str  # match | nomatch
    name: str
    passed: bool
    alerts: int
    detail: str = ""


def load_fixture(rule: AlertingRule) -> dict[str, Any]:
    path = rule.fixture_path
    if not path.exists():
        raise FixtureError(f"rule {rule.name}: no fixture file {path.name}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise FixtureError(f"{path.name}: not valid YAML ({exc})") from None
    if not data.get("match") or not data.get("nomatch"):
        raise FixtureError(f"{path.name}: needs at least one match and one nomatch case")
    return data


def run_case(
    rule: AlertingRule, base: SiemConfig, fixture: dict[str, Any], case: dict[str, Any], expectation: str, index: int
) -> CaseResult:
    from .engine import Engine
    from .store import connect

    name = str(case.get("name") or f"{expectation} #{index + 1}")
    config = base.with_overrides(expand_refs({**(fixture.get("config") or {}), **(case.get("config") or {})}))
    files = [] if rule.analytic else [rule.file]
    pack = RulePack(config=config, files=files)
    target = pack.find(rule.id)
    conn: sqlite3.Connection = connect(":memory:")
    try:
        engine = Engine(conn, pack)
        events = expand_events(case.get("events") or [], f"fx-{rule.name[:20]}-{expectation}{index}")
        engine.store.ingest(events, where=f"{rule.name} fixture '{name}'")
        engine.run([target])
        alerts = engine.alerts.list(rule_id=target.id)
    except SiemError as exc:
        return CaseResult(rule.name, expectation, name, False, 0, f"error: {exc}")
    finally:
        conn.close()
    n = len(alerts)
    passed = n > 0 if expectation == "match" else n == 0
    detail = ""
    expect = case.get("expect") or {}
    if passed and "alerts" in expect and n != int(expect["alerts"]):
        passed, detail = False, f"expected {expect['alerts']} alert(s), got {n}"
    if passed and "evidence" in expect and alerts and alerts[0].event_count != int(expect["evidence"]):
        passed, detail = False, f"expected {expect['evidence']} evidence event(s), got {alerts[0].event_count}"
    if not passed and not detail:
        detail = "no alert raised" if expectation == "match" else f"{n} alert(s) raised"
    return CaseResult(rule.name, expectation, name, passed, n, detail)


def run_fixtures(pack: RulePack, rules: list[AlertingRule] | None = None) -> list[CaseResult]:
    results = []
    for rule in rules or pack.rules:
        fixture = load_fixture(rule)
        for expectation in ("match", "nomatch"):
            for i, case in enumerate(fixture[expectation]):
                results.append(run_case(rule, pack.config, fixture, case, expectation, i))
    return results
