"""The decision point in process: the issue's scenarios and every fail-closed path."""

from __future__ import annotations

import time

import pytest

from contracts.decision import DecisionRequest
from pdp.engine import EngineError
from pdp.tokens import verify_decision_token

MONDAY_10 = 1795399200.0
MONDAY_02 = MONDAY_10 - 8 * 3600


def decide(point, doc):
    return point.decide(DecisionRequest.model_validate(doc))


def test_assigned_case_with_fido2_on_managed_device_is_permitted(point, officer_token, make_request, signer):
    decision = decide(point, make_request(officer_token()))
    assert decision.effect == "permit", decision.reasons
    assert decision.permitted_fields  # minimum necessary: a subset of what was asked
    assert set(decision.permitted_fields) <= {"name", "address", "bank_account"}
    assert any(o["type"] == "record_provenance" for o in decision.obligations)
    assert decision.risk.level in ("low", "medium")
    claims = verify_decision_token(decision.token, signer.verifier(), now=MONDAY_10 + 1)
    assert claims.decision_id == decision.decision_id
    assert claims.subject == "emp-0042"
    assert claims.citizen_ref == "cr_SAMPLEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"
    assert set(claims.fields) == set(decision.permitted_fields)
    assert claims.purpose == "benefit_review"


def test_same_officer_unmanaged_device_internet_at_2am_is_not_permitted(
        point, officer_token, make_request, clock):
    decide(point, make_request(officer_token()))  # a normal morning first: the device is known
    clock.now = MONDAY_02 + 86400  # Tuesday 02:00 Taipei
    doc = make_request(officer_token(now=clock.now),
                       device={"id": "laptop-unknown", "managed": False, "compliant": False, "posture": {}},
                       context={"ip": "203.0.113.9", "network_zone": "internet", "channel": "eservice",
                                "geo": {"lat": 25.03, "lon": 121.56, "country": "TW"}})
    decision = decide(point, doc)
    assert decision.effect in ("step_up", "deny")
    assert decision.token is None
    names = {f.name for f in decision.risk.factors}
    assert {"unmanaged_device", "network_internet", "off_hours", "new_device"} <= names
    assert decision.risk.score >= 40


def test_unassigned_case_is_denied_with_reason(point, officer_token, make_request):
    doc = make_request(officer_token(), purpose={"code": "benefit_review", "case_id": "C-9999"})
    decision = decide(point, doc)
    assert decision.effect == "deny"
    assert decision.reasons
    assert decision.token is None


def test_roles_in_the_body_are_refused_not_trusted(officer_token, make_request):
    doc = make_request(officer_token())
    doc["subject"] = {"id": "emp-0042", "roles": ["supervisor"]}
    with pytest.raises(ValueError, match="subject"):
        DecisionRequest.model_validate(doc)


@pytest.mark.parametrize("mutate,reason", [
    (lambda iss, clock: "not.a.token", "subject_token_malformed"),
    (lambda iss, clock: iss.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True,
                                          ttl_seconds=60, now=clock.now - 3600), "subject_token_expired"),
])
def test_bad_subject_token_fails_closed(point, issuer, clock, make_request, mutate, reason):
    decision = decide(point, make_request(mutate(issuer, clock)))
    assert decision.effect == "deny"
    assert decision.reasons[0] == reason
    assert decision.token is None


class _RaisingEngine:
    kind = "raising"
    revision = "r-broken"
    digest = None

    def evaluate(self, input_doc):
        raise RuntimeError("engine crashed")


class _HangingEngine:
    kind = "hanging"
    revision = "r-hang"
    digest = None

    def evaluate(self, input_doc):
        time.sleep(2)
        return {"effect": "permit"}


class _GarbageEngine:
    kind = "garbage"
    revision = "r-garbage"
    digest = None

    def evaluate(self, input_doc):
        return {"effect": "allow-everything"}


@pytest.mark.parametrize("engine,reason", [
    (_RaisingEngine(), "engine_error"),
    (_HangingEngine(), "engine_timeout"),
    (_GarbageEngine(), "engine_error"),
])
def test_engine_failures_deny(point, officer_token, make_request, engine, reason):
    from pdp.calendar import BusinessCalendar
    from pdp.point import ActivePolicy

    point.activate(ActivePolicy(engine=engine, calendar=BusinessCalendar()))
    started = time.perf_counter()
    decision = decide(point, make_request(officer_token()))
    assert decision.effect == "deny"
    assert decision.reasons == [reason]
    assert decision.token is None
    assert time.perf_counter() - started < 1.5  # the hang is cut at the budget, not waited out


def test_no_policy_denies(point, officer_token, make_request):
    point.activate(None)
    decision = decide(point, make_request(officer_token()))
    assert (decision.effect, decision.reasons) == ("deny", ["no_policy"])


def test_decision_that_cannot_be_logged_is_denied(point, officer_token, make_request):
    point.log._healthy = False  # what the writer sets when SQLite fails
    point.log.last_error = "disk full"
    decision = decide(point, make_request(officer_token()))
    assert decision.effect == "deny"
    assert "decision_log_unavailable" in decision.reasons
    assert decision.token is None


def test_every_decision_is_logged_minimised(point, officer_token, make_request):
    doc = make_request(officer_token(), purpose={"code": "benefit_review", "case_id": "C-2026-0001",
                                                 "justification": "citizen called about payment"})
    decision = decide(point, doc)
    assert point.log.flush()
    entry = point.log.get(decision.decision_id)
    assert entry["result"]["effect"] == decision.effect
    assert entry["bundles"]["ztcp"]["revision"] == "r-test"
    assert entry["path"] == "ztcp/authz/decision"
    text = str(entry)
    assert "subject_token" not in text and doc["subject_token"] not in text
    assert "citizen called" not in text  # free text never reaches the log
    assert entry["input"]["purpose"]["justification_present"] is True
    assert entry["input"]["signals"]["auth_strength"] == 3
    assert entry["metrics"]["timer_rego_query_eval_ns"] > 0


def test_a_disclosure_is_decided_on_its_recipient(point, officer_token, make_request):
    def disclose(recipient, legal_basis="TCA-Art-30"):
        return decide(point, make_request(officer_token(), action="disclose", recipient=recipient,
                                          purpose={"legal_basis": legal_basis}))

    allowed = disclose({"type": "agency", "id": "agency-tax"})
    assert allowed.effect == "permit", allowed.reasons
    assert sorted(allowed.permitted_fields) == ["address", "name"]  # the agreement has no bank_account
    claims = verify_decision_token(allowed.token, point.signer.verifier(), now=MONDAY_10 + 1)
    assert claims.action == "disclose" and claims.recipient == {"type": "agency", "id": "agency-tax"}
    assert disclose({"type": "agency", "id": "agency-x"}).reasons == ["recipient_no_agreement"]
    assert disclose(None).reasons == ["recipient_required"]
    # The decision log keeps the recipient, so an auditor can replay why it was allowed.
    assert point.log.flush()
    assert point.log.get(allowed.decision_id)["input"]["recipient"] == {"type": "agency", "id": "agency-tax"}


@pytest.mark.parametrize("overrides,message", [
    ({"recipient": {"type": "agency", "id": "agency-tax"}}, "disclose"),  # a read has no recipient
    ({"action": "disclose", "recipient": {"type": "citizen", "id": "A123456789"}}, "national ID"),
    ({"action": "disclose", "recipient": {"type": "agency", "id": "A123456789"}}, "national ID"),
    ({"action": "disclose", "recipient": {"type": "citizen", "id": "agency-tax"}}, "citizen_ref"),
    ({"action": "disclose", "recipient": {"type": "press", "id": "paper"}}, "recipient.type"),
])
def test_bad_recipients_are_refused_by_the_model(officer_token, make_request, overrides, message):
    with pytest.raises(ValueError, match=message) as exc:
        DecisionRequest.model_validate(make_request(officer_token(), **overrides))
    assert "A123456789" not in str(exc.value)


def test_shadow_revision_disagreement_is_logged_not_enforced(point, officer_token, make_request):
    from pdp.calendar import BusinessCalendar
    from pdp.point import ActivePolicy

    point.set_shadow(ActivePolicy(engine=_GarbageEngine(), calendar=BusinessCalendar()))
    decision = decide(point, make_request(officer_token()))
    assert decision.effect == "permit"
    point.log.flush()
    entry = point.log.get(decision.decision_id)
    assert entry["shadow"]["agrees"] is False and entry["shadow"]["effect"] == "error"


def test_engine_error_type_is_exported():
    assert issubclass(EngineError, Exception)


def test_unexpected_failure_inside_the_pdp_is_a_deny(point, officer_token, make_request):
    class BrokenHistory:
        def compute(self, *a, **k):
            raise KeyError("bug")

        def observe(self, *a, **k):
            pass

    point.history = BrokenHistory()
    decision = decide(point, make_request(officer_token()))
    assert (decision.effect, decision.reasons, decision.token) == ("deny", ["internal_error"], None)


def test_policy_input_is_the_request_as_json(point, officer_token, make_request, clock):
    """build_input writes the request's parts out by hand: they must be exactly model_dump(mode="json")."""
    from pdp.point import build_input

    doc = make_request(officer_token(), action="disclose",
                       context={"time": "2026-11-23T09:59:58+08:00", "ip": "2001:db8::1"},
                       purpose={"code": "benefit_review", "case_id": "C-2026-0001", "legal_basis": "LIA-Art-10",
                                "consent_id": "CNS-1", "justification": "walk-in", "break_glass": False},
                       recipient={"type": "agency", "id": "agency-tax"})
    for request in (DecisionRequest.model_validate(doc),
                    DecisionRequest.model_validate({k: v for k, v in make_request(officer_token()).items()
                                                    if k != "purpose"} | {"context": {"network_zone": "vpn"},
                                                                         "device": {"id": "d-2"}})):
        subject = point.verifier.verify_subject(request.subject_token, now=clock.now)
        signals = point.history.compute(subject, request, clock.now, point.active.calendar)
        built = build_input(subject, request, signals, clock.now, point.active.calendar)
        ctx = request.context
        assert built["device"] == request.device.model_dump(mode="json")
        assert built["resource"] == request.resource.model_dump(mode="json")
        assert built["purpose"] == request.purpose.model_dump(mode="json")
        assert built["recipient"] == (request.recipient.model_dump(mode="json") if request.recipient else None)
        assert built["context"]["geo"] == (ctx.geo.model_dump(mode="json") if ctx.geo else None)
        assert built["context"]["time"] == "2026-11-23T10:00:00+08:00"  # the PDP's clock, the bureau's zone
        assert list(built["device"]) == list(request.device.model_dump(mode="json"))  # same key order


def test_calendar_facts_cached_per_minute_match_the_calendar(point):
    from datetime import UTC, datetime

    calendar = point.active.calendar
    for now in (MONDAY_10, MONDAY_02, MONDAY_10 + 8 * 3600 - 1, MONDAY_10 + 8 * 3600, MONDAY_10 + 5 * 86400):
        for t in (now, now + 0.5, now):  # the second call of a minute comes from the cache
            moment = datetime.fromtimestamp(t, tz=UTC)
            assert calendar.at(t) == (calendar.local(moment).hour, calendar.is_off_hours(moment),
                                      calendar.is_holiday(moment))
