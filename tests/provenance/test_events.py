"""The event model: strict validation, raw-identifier screening, lineage rules, canonical bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from provenance_testkit import cref, make_event
from pydantic import ValidationError

from contracts import ProvenanceEvent
from contracts.provenance_event import canonical_bytes, canonical_bytes_reference


def test_defaults_uuid7_and_utc_time() -> None:
    e = make_event()
    assert len(e.event_id) == 36 and e.event_id[14] == "7"
    assert e.time.tzinfo is not None and e.time.utcoffset() == timedelta(0)


def test_naive_time_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        make_event(time=datetime(2026, 1, 1))  # noqa: DTZ001
    assert exc.value.errors()[0]["loc"] == ("time",)


def test_time_normalised_to_utc() -> None:
    t = datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    assert make_event(time=t).time == datetime(2026, 1, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        ("record_id", "A123456789", ("record_id",)),
        ("record_id", "row-for-a123456789-x", ("record_id",)),
        ("dataset", "F131104093", ("dataset",)),
        ("via", {"system": "B287654326"}, ("via", "system")),
        ("purpose", {"code": "x", "case_id": "Z199999999"}, ("purpose", "case_id")),
        ("actor", {"id": "staff", "unit": "H812345678"}, ("actor", "unit")),
        ("record_id", "AB12345678", ("record_id",)),  # old resident-certificate shape
        ("record_id", "0912-345-678", ("record_id",)),  # mobile number
    ],
)
def test_raw_identifiers_rejected_naming_field_not_value(field: str, value: object, loc: tuple) -> None:
    with pytest.raises(ValidationError) as exc:
        make_event(**{field: value})
    err = exc.value.errors()[0]
    assert err["loc"] == loc
    raw = value if isinstance(value, str) else next(iter(v for v in value.values() if v not in ("x", "staff")))
    assert raw not in str(exc.value)
    assert raw not in repr(exc.value) and raw not in str(exc.value.errors(include_input=False))


def test_national_id_in_list_field_located() -> None:
    with pytest.raises(ValidationError) as exc:
        make_event(derived_from=["ok-1", "A123456789"])
    assert exc.value.errors()[0]["loc"] == ("derived_from", 1)


def test_field_names_only() -> None:
    with pytest.raises(ValidationError) as exc:
        make_event(fields=["name", "Wang Xiao-ming lives at 5 Road"])
    assert exc.value.errors()[0]["loc"] == ("fields", 1)


def test_strict_types_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        make_event(fields="name")
    with pytest.raises(ValidationError) as exc:
        make_event(national_id="A123456789")
    assert exc.value.errors()[0]["loc"] == ("national_id",)
    with pytest.raises(ValidationError):
        make_event(type="pii.steal")
    with pytest.raises(ValidationError):
        make_event(citizen_ref="A123456789")


def test_audit_types_allowed() -> None:
    assert make_event(type="audit.trace", query="trace citizen").type == "audit.trace"


def test_disclosure_needs_recipient_basis_and_lineage() -> None:
    base = {"type": "pii.disclose", "recipient": {"type": "agency", "id": "MOL", "channel": "T-Road"}}
    with pytest.raises(ValidationError, match="legal_basis or purpose.consent_id"):
        make_event(**base, derived_from=["r1"], purpose={"code": "exchange"})
    with pytest.raises(ValidationError, match="derived_from"):
        make_event(**base, purpose={"code": "exchange", "legal_basis": "LIA art. 10"})
    with pytest.raises(ValidationError, match="recipient"):
        make_event(type="pii.disclose", purpose={"code": "x", "consent_id": "c1"}, derived_from=["r1"])
    ok = make_event(**base, purpose={"code": "exchange", "legal_basis": "LIA art. 10"}, derived_from=["r1"])
    assert ok.recipient is not None and ok.derived_from == ["r1"]


def test_actor_and_purpose_accept_plain_strings() -> None:
    e = make_event(actor="svc-batch", purpose="benefit-review")
    assert e.actor.id == "svc-batch" and e.purpose is not None and e.purpose.code == "benefit-review"


def test_json_round_trip_is_stable() -> None:
    e = make_event(3)
    body = canonical_bytes(e)
    again = ProvenanceEvent.model_validate_json(body)
    assert again == e and canonical_bytes(again) == body


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: not __import__("re").search(r"[A-Za-z][12890A-Da-d][0-9]{8}|09[0-9]{2}", s)
)


@settings(max_examples=200, deadline=None)
@given(unit=_text, system=_text, record=_text, code=_text)
def test_canonical_bytes_equal_rfc8785(unit: str, system: str, record: str, code: str) -> None:
    e = make_event(actor={"id": "s1", "unit": unit}, via={"system": system}, record_id=record, purpose={"code": code})
    assert canonical_bytes(e) == rfc8785.dumps(e.model_dump(mode="json", exclude_none=True))
    assert canonical_bytes(e) == canonical_bytes_reference(e)


def test_citizen_ref_pattern() -> None:
    assert make_event(citizen_ref=cref(1)).citizen_ref == cref(1)


def test_uuid_ids_are_not_mistaken_for_national_ids() -> None:
    e = make_event(event_id="0193a1b2-c3d4-7e5f-8a9b-a12345678901", decision_id="0193a1b2-c3d4-7e5f-8a9b-0912345678ab")
    assert ProvenanceEvent.model_validate_json(canonical_bytes(e)) == e


def test_lone_surrogate_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        make_event(record_id="bad\ud800")
    assert exc.value.errors()[0]["loc"] == ("record_id",)
