"""Event schemas: validation refuses what rules could not trust; flattening is what rules see."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siem_rules import EventError
from siem_rules.events import FIELDS, Flattener, validate
from siem_rules.fixtures import DEFAULTS
from siem_rules.sources import parse_line


def _event(kind: str, **over) -> dict:
    ev = copy.deepcopy(DEFAULTS[kind])
    ev.update(
        {"event_id": "e1", "time": "2026-03-04T02:00:00Z"}
        if kind != "decision"
        else {"decision_id": "d1", "timestamp": "2026-03-04T02:00:00Z"}
    )
    ev.update(over)
    return ev


@pytest.mark.parametrize("kind", ["decision", "provenance", "key", "policy"])
def test_defaults_validate(kind: str) -> None:
    validate(kind, _event(kind))


def test_raw_national_id_in_citizen_ref_is_refused_without_echo() -> None:
    with pytest.raises(EventError) as exc:
        validate("provenance", _event("provenance", citizen_ref="A123456789"))
    assert "A123456789" not in str(exc.value)
    assert "citizen_ref" in str(exc.value)


@pytest.mark.parametrize("time", ["2026-03-04T02:00:00", "yesterday", None, 12])
def test_time_must_be_rfc3339_with_offset(time) -> None:
    with pytest.raises(EventError):
        validate("key", _event("key", time=time))


def test_unknown_type_and_kind_refused() -> None:
    with pytest.raises(EventError):
        validate("key", _event("key", type="key.steal"))
    with pytest.raises(EventError):
        validate("provenance", _event("provenance", type="pii.leak"))
    with pytest.raises(EventError):
        validate("alert", {})


def test_decision_effect_is_constrained() -> None:
    ev = _event("decision")
    ev["result"]["effect"] = "maybe"
    with pytest.raises(EventError, match="result.effect"):
        validate("decision", ev)


def test_flatten_local_time_lists_booleans() -> None:
    flat = Flattener("provenance", "Asia/Taipei")
    row = flat.row(
        _event(
            "provenance",
            time="2026-03-07T15:30:00Z",
            fields=["name", "bank_account"],
            purpose={"code": "x", "case_id": ""},
        )
    )
    cols = ["event_id", "ts"] + [c.column for c in FIELDS["provenance"][1:]]
    r = dict(zip(cols, row, strict=True))
    assert r["local_hour"] == "23" and r["local_weekday"] == "sat" and r["local_slot"] == "sat-23"
    assert r["local_date"] == "2026-03-07"
    assert r["fields"] == "|name|bank_account|"
    assert r["changed"] is None  # a read changes nothing (``changed`` is an update's fields)
    assert r["case_id"] is None  # empty string = absent
    dflat = Flattener("decision")
    drow = dict(
        zip(["event_id", "ts"] + [c.column for c in FIELDS["decision"][1:]], dflat.row(_event("decision")), strict=True)
    )
    assert drow["sig_self_record"] == 0 and drow["auth_mfa"] == 1
    assert drow["obligations"] is None


def test_unknown_extra_fields_are_not_stored() -> None:
    flat = Flattener("provenance")
    row = flat.row(_event("provenance", note="A123456789 Wang Xiao-ming"))
    assert not any("A123456789" in str(v) for v in row)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_jsonl_parser_never_crashes_on_garbage(data: bytes) -> None:
    try:
        kind, ev = parse_line(data, "f:1")
    except EventError as exc:
        assert exc.where == "f:1"
    else:
        assert kind in ("decision", "provenance", "key", "policy") and isinstance(ev, dict)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["event_id", "time", "type", "actor", "citizen_ref", "via", "fields"]),
        st.one_of(st.none(), st.text(max_size=12), st.integers(), st.lists(st.text(max_size=5))),
    )
)
def test_validation_only_raises_event_error(ev: dict) -> None:
    try:
        out = validate("provenance", ev)
    except EventError as exc:
        assert exc.problem.startswith("provenance event field")
    else:
        assert out is ev and {"event_id", "time", "type", "actor"} <= set(ev)


def test_store_looks_events_up_by_id_across_kinds(tmp_path):
    """An alert's evidence ids may name decisions, provenance, key and policy events alike."""
    from demo.siem_week import Traffic
    from siem_rules import EventStore, connect

    sim = Traffic(seed=3, employees=20, citizens=100)
    events = sim.benign(days=1, reads_per_hour=2.0)
    store = EventStore(connect(tmp_path / "siem.db"))
    store.ingest(events)
    wanted = [events[0], events[len(events) // 2], events[-1]]
    ids = [e.get("event_id") or e.get("decision_id") for _, e in wanted]
    found = store.by_ids([*ids, "no-such-event"])
    assert sorted(r["event_id"] for _, r in found) == sorted(ids)
    assert {k for k, _ in found} <= {"decision", "provenance", "key", "policy"}
    assert [r["ts"] for _, r in found] == sorted(r["ts"] for _, r in found)
    assert store.by_ids([]) == []
