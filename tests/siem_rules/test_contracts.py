"""The SIEM reads its producers' contracts, not private copies of them.

* every Sigma field is read from a path that exists in the producer's contract
  (``contracts.decision_log.DecisionLogEntry``, ``contracts.provenance_event.ProvenanceEvent``);
* an entry written by the real DecisionPoint (real tokens, the default pack on regorus, the real
  decision log file) is accepted and flattened with the values rules need — the policy revision too;
* the SIEM's own test material (fixture defaults, the simulated week) is in the contracts' shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.conformance import field_type, problems
from contracts.decision import DecisionRequest
from contracts.decision_log import DecisionLogEntry
from contracts.provenance_event import ProvenanceEvent
from demo.siem_week import WEEK_START, Traffic
from siem_rules.events import FIELDS, LEDGER_FIELDS, Flattener, normalise, validate
from siem_rules.fixtures import expand_events

CITIZEN = "cr_SAMPLEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"  # case C-2026-0001 in the default pack's data
NOW = 1795399200.0  # Monday 2026-11-23 10:00 Taipei


def _model_path_exists(model: Any, path: str) -> bool:
    """Walk a pydantic model's annotations along a dotted path (through optional and list parts)."""
    tp = model
    for part in path.split("."):
        while get_origin(tp) is not None and get_origin(tp) is not list and hasattr(tp, "__args__"):
            options = [a for a in get_args(tp) if a is not type(None)]
            tp = options[0]  # X | None, Annotated[X, ...]
        if get_origin(tp) is list:
            tp = get_args(tp)[0]
        fields = getattr(tp, "model_fields", None)
        if fields is None or part not in fields:
            return False
        tp = fields[part].annotation
    return True


@pytest.mark.parametrize("column", [c for c in FIELDS["decision"] if not c.derived], ids=lambda c: c.field)
def test_every_decision_field_is_in_the_decision_log_contract(column) -> None:
    field_type(DecisionLogEntry, column.source)  # raises KeyError naming the part the contract lacks


@pytest.mark.parametrize("column", [c for c in FIELDS["provenance"] if not c.derived], ids=lambda c: c.field)
def test_every_provenance_field_is_in_the_ledgers_event(column) -> None:
    assert column.source in LEDGER_FIELDS or _model_path_exists(ProvenanceEvent, column.source), column.source


def test_the_path_checks_catch_a_field_no_producer_writes() -> None:
    with pytest.raises(KeyError, match="revision"):
        field_type(DecisionLogEntry, "bundles.revision")  # OPA's shape is bundles.<name>.revision
    with pytest.raises(KeyError, match="related_party"):
        field_type(DecisionLogEntry, "input.signals.related_party")  # the PDP computes no such signal
    assert not _model_path_exists(ProvenanceEvent, "changed")
    assert _model_path_exists(ProvenanceEvent, "recipient.id") and _model_path_exists(ProvenanceEvent, "actor.id")


@pytest.fixture
def real_entries(tmp_path: Path) -> list[dict]:
    """Entries written by the real DecisionPoint into a real decision log file, read back from it."""
    from pdp.calendar import BusinessCalendar
    from pdp.decision_log import DecisionLog, DecisionLogReader
    from pdp.engine import create_engine
    from pdp.identity import JwtVerifier, StaticKeySource
    from pdp.issuer import DevIssuer
    from pdp.point import ActivePolicy, DecisionPoint
    from pdp.signals import SignalHistory
    from pdp.tokens import DecisionTokenSigner
    from policy import load_pack

    pack = load_pack()
    issuer = DevIssuer(Ed25519PrivateKey.generate(), "https://idp.test", "ztcp")
    verifier = JwtVerifier(StaticKeySource(issuer.jwks), "https://idp.test", "ztcp", leeway_seconds=30)
    calendar = BusinessCalendar.from_config(pack.data.get("ztcp", {}).get("config", {}).get("calendar"))
    active = ActivePolicy(engine=create_engine(pack, "regorus", revision="r-live-7"), calendar=calendar)
    log = DecisionLog(tmp_path / "decisions.db")
    history = SignalHistory(None, clock=lambda: NOW)
    point = DecisionPoint(verifier=verifier, signer=DecisionTokenSigner(Ed25519PrivateKey.generate(),
                          issuer="https://pdp.test"), log=log, history=history, active=active, timeout_ms=500,
                          clock=lambda: NOW)
    token = issuer.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True, org_unit="taipei-03",
                                 now=NOW)
    base = {
        "subject_token": token,
        "device": {"id": "dev-1", "managed": True, "compliant": True},
        "context": {"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter",
                    "geo": {"lat": 25.03, "lon": 121.56, "country": "TW"}},
        "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                     "citizen_ref": CITIZEN, "fields": ["name", "address"], "classification": "personal"},
        "action": "read",
        "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"},
    }
    try:
        ids = [
            point.decide(DecisionRequest.model_validate(base)).decision_id,
            point.decide(DecisionRequest.model_validate({**base, "subject_token": "not.a.token"})).decision_id,
            point.decide(DecisionRequest.model_validate(
                {**base, "action": "disclose", "recipient": {"type": "agency", "id": "agency-x"},
                 "purpose": {"legal_basis": "TCA-Art-30"}})).decision_id,
        ]
        assert log.flush()
    finally:
        point.close()
        log.close()
    reader = DecisionLogReader(tmp_path / "decisions.db")
    return [reader.get(i) for i in ids]


def _row(kind: str, event: dict) -> dict:
    cols = ["event_id", "ts"] + [c.column for c in FIELDS[kind][1:]]
    return dict(zip(cols, Flattener(kind).row(normalise(kind, event)), strict=True))


def test_real_decision_log_entries_are_read_with_their_revision(real_entries: list[dict]) -> None:
    permit, refused, disclose = real_entries
    for entry in real_entries:
        assert problems(entry, DecisionLogEntry) == []  # what the PDP wrote is its contract
        validate("decision", entry)  # and the SIEM accepts it
    row = _row("decision", permit)
    assert row["revision"] == "r-live-7"  # bundles.ztcp.revision: the policy that decided reaches the SIEM
    assert (row["subject_id"], row["citizen_ref"], row["effect"], row["case_id"]) == (
        "emp-0042", CITIZEN, "permit", "C-2026-0001")
    assert (row["auth_method"], row["auth_mfa"], row["sig_self_record"], row["sig_off_hours"]) == ("fido2", 1, 0, 0)
    assert row["risk_level"] in ("low", "medium") and row["permitted_fields"]
    refused_row = _row("decision", refused)
    assert refused_row["subject_id"] is None and refused_row["reasons"] == "|subject_token_malformed|"
    assert refused_row["revision"] == "r-live-7"
    disclose_row = _row("decision", disclose)
    assert (disclose_row["action"], disclose_row["effect"]) == ("disclose", "deny")
    assert "|recipient_no_agreement|" in disclose_row["reasons"]  # what disclosure_to_unapproved_recipient reads


def test_fixture_defaults_and_the_simulated_week_are_in_the_contracts_shapes() -> None:
    (_, fixture_decision), (_, fixture_prov) = expand_events(
        [{"kind": "decision"}, {"kind": "provenance"}], "fx")
    assert problems(fixture_decision, DecisionLogEntry) == []
    ProvenanceEvent.model_validate_json(orjson.dumps(fixture_prov))
    t = Traffic(seed=5, employees=2)
    events = t.benign(days=1, start=WEEK_START) + [e for _, evs in t.incidents().values() for e in evs]
    decisions = [ev for kind, ev in events if kind == "decision"]
    assert decisions and all(problems(ev, DecisionLogEntry) == [] for ev in decisions)
    for kind, ev in events:
        validate(kind, ev)  # provenance by the ledger's own model
