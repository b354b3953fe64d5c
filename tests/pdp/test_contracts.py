"""The PDP writes exactly its contracts: signals, policy input and decision-log entry (contracts/).

Each entry here is written by the real DecisionPoint (real tokens, the default pack on regorus, the
real decision log) and read back from the log's file, then checked key by key and type by type
against the TypedDicts: a key the PDP adds or drops without the contract fails here.
"""

from __future__ import annotations

import pytest

from contracts.conformance import problems
from contracts.decision import DecisionRequest
from contracts.decision_log import DecisionLogEntry, LoggedInput, RefusedInput
from contracts.policy_input import PolicyInput
from contracts.signals import Signals
from pdp.calendar import BusinessCalendar
from pdp.decision_log import DecisionLogReader
from pdp.point import ActivePolicy, build_input


class _ErrorEngine:
    kind, revision, digest = "error", "r-err", None

    def evaluate(self, input_doc):
        raise RuntimeError("down")


def _logged(point, doc: dict) -> dict:
    decision = point.decide(DecisionRequest.model_validate(doc))
    assert point.log.flush()
    entry = DecisionLogReader(point.log.path).get(decision.decision_id)  # as stored, after a JSON round trip
    assert entry is not None
    return entry


def test_the_contract_checker_finds_what_is_wrong() -> None:
    """The checker itself: missing, undeclared and mistyped keys are each reported, by path only."""
    assert problems({"auth_strength": 3}, Signals)[:1] == ["$.device_first_seen: missing"]
    found = problems({"decision_id": 7, "surprise": True}, DecisionLogEntry)
    assert "$.decision_id: expected str, got int" in found
    assert "$.surprise: not in the contract (DecisionLogEntry)" in found
    assert problems(True, int) == ["$: expected int, got bool"]
    assert problems(None, str | None) == [] and problems(1, float) == []


def test_permit_entry_with_justification_and_shadow_is_the_contract(point, officer_token, make_request) -> None:
    point.set_shadow(ActivePolicy(engine=_ErrorEngine(), calendar=BusinessCalendar()))
    doc = make_request(officer_token(), purpose={"code": "benefit_review", "case_id": "C-2026-0001",
                                                 "justification": "called about a payment"})
    entry = _logged(point, doc)
    assert entry["result"]["effect"] == "permit"
    assert problems(entry, DecisionLogEntry) == []
    assert problems(entry["input"], LoggedInput) == []  # the full input, minimised
    assert entry["input"]["purpose"]["justification_length"] == len("called about a payment")
    assert entry["shadow"]["effect"] == "error"  # the optional part is checked too


@pytest.mark.parametrize("case", ["bad_token", "engine_error", "disclose_denied"])
def test_refusals_are_the_contract_too(point, officer_token, make_request, case) -> None:
    if case == "bad_token":
        doc = make_request("not.a.token")
    elif case == "engine_error":
        point.activate(ActivePolicy(engine=_ErrorEngine(), calendar=BusinessCalendar()))
        doc = make_request(officer_token())
    else:
        doc = make_request(officer_token(), action="disclose", recipient={"type": "agency", "id": "agency-x"},
                           purpose={"legal_basis": "TCA-Art-30"})
    entry = _logged(point, doc)
    assert entry["result"]["effect"] == "deny"
    assert problems(entry, DecisionLogEntry) == []
    if case == "bad_token":  # refused before the policy input existed: who, what, which resource
        assert problems(entry["input"], RefusedInput) == [] and entry["input"]["subject"]["id"] is None
    else:
        assert problems(entry["input"], LoggedInput) == []


def test_signals_and_policy_input_are_their_contracts(point, officer_token, make_request, clock) -> None:
    doc = make_request(officer_token(), context={"time": "2026-11-23T10:00:00+08:00"})  # client_time is set too
    request = DecisionRequest.model_validate(doc)
    subject = point.verifier.verify_subject(request.subject_token, now=clock.now)
    calendar = point.active.calendar
    signals = point.history.compute(subject, request, clock.now, calendar)
    assert problems(signals, Signals) == []
    assert set(signals) == set(Signals.__annotations__)
    assert problems(build_input(subject, request, signals, clock.now, calendar), PolicyInput) == []
