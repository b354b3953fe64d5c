"""The decision point: token → signals → policy → decision token → log, failing closed at every step.

A request is answered with permit only when every step succeeded: the subject token verified, the
policy evaluated within its budget and returned a well-formed decision, the decision token was
signed and the decision log accepted the entry. Any failure yields ``deny`` with a reason naming
the step (``subject_token_<why>``, ``signal_history_unavailable``, ``engine_error``,
``engine_timeout``, ``no_policy``, ``decision_log_unavailable``) and no token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from uuid_utils import uuid7

from contracts.decision import Decision, DecisionRequest, PolicyRef, Risk, RiskFactor
from contracts.decision_log import DecisionLogEntry, LoggedInput, LoggedResult, RefusedInput, ShadowResult
from contracts.policy_input import InputResource, PolicyInput
from contracts.signals import Signals
from pdp.calendar import BusinessCalendar
from pdp.decision_log import DecisionLog
from pdp.engine import Engine, GuardedEngine
from pdp.errors import (
    DecisionLogError,
    EngineError,
    EngineTimeout,
    NoPolicy,
    SignalHistoryUnavailable,
    SubjectTokenError,
)
from pdp.identity import JwtVerifier, SubjectIdentity
from pdp.metrics import PdpMetrics
from pdp.models import risk_level
from pdp.signals import SignalHistory
from pdp.tokens import DecisionTokenSigner

log = logging.getLogger("ztcp.pdp")
QUERY_PATH = "ztcp/authz/decision"
# Fail-closed reasons that say the PDP's own storage is down (the shared database, with replicas), not
# that policy refused: HTTP answers them 503 (retry), never a 200 deny a caller might cache or report
# as the citizen's refusal. The decision is a deny without a token all the same.
UNAVAILABLE_REASONS = frozenset({"decision_log_unavailable", "signal_history_unavailable"})


def unavailable(decision: Decision) -> bool:
    """The PDP could not log or vouch for this decision (a deny without a token): answer 503."""
    return decision.effect == "deny" and not UNAVAILABLE_REASONS.isdisjoint(decision.reasons)


# Obligations the decryption path must enforce travel inside the decision token.
_TOKEN_OBLIGATIONS = {"mask", "max_rows", "record_provenance"}


@dataclass
class ActivePolicy:
    """An engine and the calendar derived from the same pack, swapped together on reload."""

    engine: Engine
    calendar: BusinessCalendar

    @property
    def revision(self) -> str | None:
        return self.engine.revision

    @property
    def digest(self) -> str | None:
        return self.engine.digest


def _iso(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class DecisionPoint:
    def __init__(
        self,
        *,
        verifier: JwtVerifier,
        signer: DecisionTokenSigner,
        log: DecisionLog,
        history: SignalHistory,
        active: ActivePolicy | None,
        timeout_ms: int = 50,
        metrics: PdpMetrics | None = None,
        clock: Any = time.time,
    ) -> None:
        self.verifier = verifier
        self.signer = signer
        self.log = log
        self.history = history
        self.metrics = metrics or PdpMetrics()
        self._by_effect: dict[str, Any] = {}
        self._guard = GuardedEngine(active.engine if active else None, timeout_ms=timeout_ms)
        self._active = active
        self._shadow: ActivePolicy | None = None
        self._clock = clock

    # -- policy activation (hot reload) -----------------------------------------------------
    @property
    def active(self) -> ActivePolicy | None:
        return self._active

    @property
    def shadow(self) -> ActivePolicy | None:
        return self._shadow

    def activate(self, active: ActivePolicy | None) -> None:
        """Switch policy atomically: requests already holding the old one finish on it."""
        self._active = active
        self._guard.swap(active.engine if active else None)

    def set_shadow(self, shadow: ActivePolicy | None) -> None:
        if shadow is not None:
            self._guard.prepare(shadow.engine)
        self._shadow = shadow

    # -- deciding ---------------------------------------------------------------------------
    def decide(self, request: DecisionRequest, *, caller: str | None = None) -> Decision:
        """Decide one request. Never raises for a request: any unexpected failure is a deny."""
        try:
            return self._decide(request, caller)
        except Exception as exc:  # fail closed on our own bugs too, and say so in the server log
            log.exception("decision failed unexpectedly (%s); answering deny", type(exc).__name__)
            now = float(self._clock())
            return self._refuse(str(uuid7()), now, time.perf_counter(), request, None, self._active,
                                "internal_error", caller)

    def _decide(self, request: DecisionRequest, caller: str | None) -> Decision:
        started = time.perf_counter()
        now = float(self._clock())
        decision_id = str(uuid7())
        active = self._active  # one snapshot for the whole request
        try:
            subject = self.verifier.verify_subject(request.subject_token, now=now)
        except SubjectTokenError as exc:
            return self._refuse(decision_id, now, started, request, None, active,
                                f"subject_token_{exc.reason}", caller)
        calendar = active.calendar if active else BusinessCalendar()
        try:
            signals = self.history.compute(subject, request, now, calendar)
        except SignalHistoryUnavailable:
            return self._refuse(decision_id, now, started, request, subject, active,
                                "signal_history_unavailable", caller)
        input_doc = build_input(subject, request, signals, now, calendar)
        eval_started = time.perf_counter_ns()
        try:
            if active is None:
                raise NoPolicy("no policy loaded")
            result = self._guard.evaluate(input_doc, active.engine)
        except NoPolicy:
            return self._refuse(decision_id, now, started, request, subject, active, "no_policy", caller,
                                input_doc=input_doc)
        except EngineTimeout:
            return self._refuse(decision_id, now, started, request, subject, active, "engine_timeout", caller,
                                input_doc=input_doc)
        except EngineError:
            return self._refuse(decision_id, now, started, request, subject, active, "engine_error", caller,
                                input_doc=input_doc)
        eval_ns = time.perf_counter_ns() - eval_started
        decision = self._decision(decision_id, now, request, subject, result, active)
        shadow = self._shadow_result(input_doc, decision)
        entry = log_entry(decision, input_doc, now, caller, active, eval_ns, started, shadow)
        try:
            self.log.submit(entry)
        except DecisionLogError:
            return self._refuse(decision_id, now, started, request, subject, active,
                                "decision_log_unavailable", caller, log=False)
        self.history.observe(subject.id, request, decision.effect, now)
        self._count(decision.effect, started)
        return decision

    def _decision(self, decision_id: str, now: float, request: DecisionRequest, subject: SubjectIdentity,
                  result: dict[str, Any], active: ActivePolicy) -> Decision:
        effect = result["effect"]
        risk_doc = result.get("risk") or {}
        score = max(0, min(100, int(risk_doc.get("score", 0))))
        # Nested parts as plain dicts: the Decision is then validated in one pass of pydantic-core
        # (a quarter cheaper than building Risk and RiskFactor models first; model_construct, being
        # Python, costs twice as much as either).
        factors = [{"name": str(f.get("name")), "points": int(f.get("points", 0)), "detail": str(f.get("detail", ""))}
                   for f in risk_doc.get("factors", []) if isinstance(f, dict)]
        level = risk_doc.get("level") if risk_doc.get("level") in ("low", "medium", "high", "critical") \
            else risk_level(score)
        if effect == "permit":
            allowed = set(result.get("permitted_fields", []))
            permitted = [f for f in request.resource.fields if f in allowed]
        else:
            permitted = []
        reasons = [str(r) for r in result.get("reasons", [])] or [f"policy_{effect}"]
        obligations = [o for o in result.get("obligations", []) if isinstance(o, dict) and "type" in o]
        token = None
        exp = now + self.signer.ttl_seconds
        if effect == "permit":
            token, _, exp_i = self.signer.sign({
                "jti": decision_id, "sub": subject.id, "effect": "permit", "action": request.action,
                "citizen_ref": request.resource.citizen_ref, "dataset": request.resource.dataset,
                "record_id": request.resource.record_id, "fields": permitted,
                "purpose": request.purpose.code, "case_id": request.purpose.case_id,
                "obligations": [o for o in obligations if o["type"] in _TOKEN_OBLIGATIONS],
                "rev": active.revision,
                # A disclosure permit names whom it allows the data to go to.
                **({"recipient": request.recipient.model_dump()} if request.recipient else {}),
            }, now=int(now))
            exp = float(exp_i)
        return Decision.model_validate({
            "decision_id": decision_id, "effect": effect,
            "risk": {"score": score, "level": level, "factors": factors},
            "reasons": reasons, "obligations": obligations, "permitted_fields": permitted,
            "policy": {"revision": active.revision, "digest": active.digest},
            "issued_at": _iso(now), "expires_at": _iso(exp), "token": token,
        })

    def _shadow_result(self, input_doc: PolicyInput, decision: Decision) -> ShadowResult | None:
        shadow = self._shadow
        if shadow is None:
            return None
        try:
            result = self._guard.evaluate(input_doc, shadow.engine)
            effect = result["effect"]
        except EngineError as exc:
            effect, result = "error", {"reasons": [type(exc).__name__]}
        agrees = effect == decision.effect
        if not agrees:
            self.metrics.shadow_disagreements.inc()
        return {"revision": shadow.revision, "effect": effect, "agrees": agrees,
                "reasons": result.get("reasons", [])}

    def _refuse(self, decision_id: str, now: float, started: float, request: DecisionRequest,
                subject: SubjectIdentity | None, active: ActivePolicy | None, reason: str,
                caller: str | None, *, input_doc: PolicyInput | None = None, log: bool = True) -> Decision:
        """Fail closed: deny, no token, logged like any other decision (when the log works)."""
        decision = Decision(
            decision_id=decision_id, effect="deny",
            risk=Risk(score=100, level="critical", factors=[RiskFactor(name=reason, points=100,
                                                                      detail="fail closed")]),
            reasons=[reason],
            policy=PolicyRef(revision=active.revision if active else None,
                             digest=active.digest if active else None),
            issued_at=_iso(now), expires_at=_iso(now),
        )
        self.metrics.failures.labels(reason=reason.split("subject_token_")[0] or "subject_token").inc()
        if log:
            doc = input_doc or minimal_input(subject, request)
            try:
                self.log.submit(log_entry(decision, doc, now, caller, active, 0, started, None))
            except DecisionLogError:
                decision.reasons.append("decision_log_unavailable")
        if subject is not None:
            self.history.observe(subject.id, request, "deny", now)
        self._count("deny", started)
        return decision

    def _count(self, effect: str, started: float) -> None:
        counter = self._by_effect.get(effect)
        if counter is None:  # labels() hashes its arguments and takes a lock: looked up once per effect
            counter = self._by_effect[effect] = self.metrics.decisions.labels(effect=effect)
        counter.inc()
        self.metrics.latency.observe(time.perf_counter() - started)

    def close(self) -> None:
        self._guard.close()


def build_input(subject: SubjectIdentity, request: DecisionRequest, signals: Signals, now: float,
                calendar: BusinessCalendar) -> PolicyInput:
    """The policy input (see policy/rego/README.md). Time is the PDP's, in the bureau's zone.

    The request's parts are written out field by field rather than with ``model_dump``: the same
    JSON values (every field is a str, bool, int, float or None once validated; the IP is its text),
    at a fifth of the cost, and this runs for every decision (tests/pdp/test_point.py compares).
    """
    ctx = request.context
    device = request.device
    posture = device.posture
    res = request.resource
    purpose = request.purpose
    geo = ctx.geo
    recipient = request.recipient
    return {
        "subject": {
            "id": subject.id, "type": subject.type, "roles": list(subject.roles), "org_unit": subject.org_unit,
            "citizen_ref": subject.citizen_ref,
            "auth": {"method": subject.auth_method, "mfa": subject.mfa, "auth_time": subject.auth_time,
                     "token_age_s": signals["token_age_s"]},
        },
        "device": {"id": device.id, "managed": device.managed, "compliant": device.compliant,
                   "posture": {"baseline_ok": posture.baseline_ok, "edr_running": posture.edr_running,
                               "disk_encrypted": posture.disk_encrypted, "patch_age_days": posture.patch_age_days}},
        "context": {
            "ip": str(ctx.ip) if ctx.ip else None, "network_zone": ctx.network_zone, "channel": ctx.channel,
            "time": datetime.fromtimestamp(now, calendar.zone).isoformat(),
            "client_time": ctx.time.isoformat() if ctx.time else None,
            "geo": {"lat": geo.lat, "lon": geo.lon, "country": geo.country} if geo else None,
        },
        "resource": {"type": res.type, "dataset": res.dataset, "record_id": res.record_id,
                     "citizen_ref": res.citizen_ref, "fields": list(res.fields), "classification": res.classification},
        "action": request.action,
        "purpose": {"code": purpose.code, "case_id": purpose.case_id, "legal_basis": purpose.legal_basis,
                    "consent_id": purpose.consent_id, "justification": purpose.justification,
                    "break_glass": purpose.break_glass},
        "recipient": {"type": recipient.type, "id": recipient.id} if recipient else None,
        "signals": signals,
    }


def _resource(request: DecisionRequest) -> InputResource:
    """``request.resource.model_dump(mode="json")``, written out (every field is a str or None)."""
    res = request.resource
    return {"type": res.type, "dataset": res.dataset, "record_id": res.record_id, "citizen_ref": res.citizen_ref,
            "fields": list(res.fields), "classification": res.classification}


def minimal_input(subject: SubjectIdentity | None, request: DecisionRequest) -> RefusedInput:
    return {
        "subject": {"id": subject.id if subject else None},
        "resource": _resource(request),
        "action": request.action,
    }


def _minimise(input_doc: PolicyInput | RefusedInput) -> LoggedInput | RefusedInput:
    """What the decision log keeps of the input: no token, no free text (it may hold personal data)."""
    doc: dict[str, Any] = dict(input_doc)
    purpose = dict(doc.get("purpose") or {})
    if "justification" in purpose:
        text = purpose.pop("justification")
        purpose["justification_present"] = bool(text)
        purpose["justification_length"] = len(text or "")
    if purpose:
        doc["purpose"] = purpose
    # The input's own keys, with the purpose minimised as LoggedPurpose says.
    return cast("LoggedInput | RefusedInput", doc)


def log_entry(decision: Decision, input_doc: PolicyInput | RefusedInput, now: float, caller: str | None,
              active: ActivePolicy | None, eval_ns: int, started: float,
              shadow: ShadowResult | None) -> DecisionLogEntry:
    """The decision-log entry (:class:`contracts.decision_log.DecisionLogEntry`, OPA field names)."""
    risk = decision.risk
    # What ``model_dump(mode="json")`` of the result fields gives, written out (a third of the cost);
    # the lists are copied: a refused decision's reasons grow after its entry is queued.
    result: LoggedResult = {
        "effect": decision.effect,
        "risk": {"score": risk.score, "level": risk.level,
                 "factors": [{"name": f.name, "points": f.points, "detail": f.detail} for f in risk.factors]},
        "reasons": list(decision.reasons),
        "obligations": [dict(o) for o in decision.obligations],
        "permitted_fields": list(decision.permitted_fields),
    }
    entry: DecisionLogEntry = {
        "decision_id": decision.decision_id,
        "timestamp": decision.issued_at.isoformat().replace("+00:00", "Z"),
        "ts": now,
        "path": QUERY_PATH,
        "input": _minimise(input_doc),
        "result": result,
        "bundles": {"ztcp": {"revision": active.revision if active else None,
                             "digest": active.digest if active else None}},
        "labels": {"engine": active.engine.kind if active else None},
        "metrics": {"timer_rego_query_eval_ns": eval_ns,
                    "timer_server_handler_ns": int((time.perf_counter() - started) * 1e9)},
        "requested_by": caller,
    }
    if shadow is not None:
        entry["shadow"] = shadow
    return entry
