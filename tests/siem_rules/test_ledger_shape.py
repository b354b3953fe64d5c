"""Provenance events as the ledger writes them (contracts.provenance_event: actor and recipient are
objects, a pii.update names its changed fields in ``fields``, ``seq``/``leaf_hash`` ride along) are
validated by the ledger's own contract and detected, not quarantined — on every path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import contracts
from siem_rules import CallableSource, Engine, EventError, RulePack, SiemConfig, connect
from siem_rules.events import FIELDS, Flattener, normalise, validate
from siem_rules.fixtures import synthetic_bank_account_ref, synthetic_citizen_ref

REF = synthetic_citizen_ref("victim-1")
T0 = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Taipei
LEAF = "ab" * 32


def _ledger_doc(seq: int | None = None, **fields) -> dict:
    """The JSON the provenance ledger stores and ``Ledger.events_after`` returns (with seq, leaf_hash)."""
    doc = contracts.ProvenanceEvent(**fields).model_dump(mode="json", exclude_none=True)
    if seq is not None:
        doc["seq"], doc["leaf_hash"] = seq, LEAF
    return doc


def _row(doc: dict) -> dict:
    validate("provenance", doc)
    cols = ["event_id", "ts"] + [c.column for c in FIELDS["provenance"][1:]]
    return dict(zip(cols, Flattener("provenance").row(normalise("provenance", doc)), strict=True))


def _engine(events: list[dict]) -> Engine:
    engine = Engine(connect(":memory:"), RulePack(SiemConfig(external_recipients_allowed=["agency-tax"])))
    served = {"done": False}

    def fetch(cursor, limit):  # noqa: ANN001, ANN202 - CallableSource's fetch signature
        if served["done"]:
            return [], cursor
        served["done"] = True
        return events, "1"

    engine.ingest([CallableSource("provenance", "provenance", fetch)])
    return engine


def test_rules_see_the_actor_and_recipient_ids_and_an_updates_fields_as_changed() -> None:
    actor = {"id": "emp-0321", "type": "staff", "roles": ["x"]}
    update = _ledger_doc(7, type="pii.update", time=T0, actor=actor, citizen_ref=REF, dataset="insured_persons",
                         record_id="7", fields=["bank_account"], purpose={"code": "data_correction"},
                         bank_account_ref=synthetic_bank_account_ref("mule-1"))
    row = _row(update)
    assert (row["actor"], row["changed"], row["fields"], row["seq"]) == (
        "emp-0321", "|bank_account|", "|bank_account|", 7)
    assert row["bank_account_ref"] == synthetic_bank_account_ref("mule-1")
    read = _ledger_doc(8, type="pii.read", time=T0, actor=actor, citizen_ref=REF, fields=["bank_account"])
    assert _row(read)["changed"] is None  # a read's fields were read, not changed
    disclose = _ledger_doc(9, type="pii.disclose", time=T0, actor=actor, citizen_ref=REF, fields=["name"],
                           purpose={"code": "x", "legal_basis": "TCA-Art-30"}, derived_from=[read["event_id"]],
                           recipient={"type": "agency", "id": "agency-tax", "name": "Tax"})
    assert _row(disclose)["recipient"] == "agency-tax"


def test_the_contracts_shorthands_read_like_the_objects() -> None:
    """The contract accepts ``actor: "id"`` and ``purpose: "code"``; the SIEM reads both forms alike."""
    full = _ledger_doc(type="pii.read", time=T0, actor={"id": "emp-1"}, citizen_ref=REF,
                       purpose={"code": "benefit_review"})
    short = {**full, "actor": "emp-1", "purpose": "benefit_review"}
    assert normalise("provenance", full) is full  # already objects: untouched
    expanded = normalise("provenance", short)
    assert expanded["actor"] == {"id": "emp-1"} and expanded["purpose"] == {"code": "benefit_review"}
    assert short["actor"] == "emp-1"  # the caller's dict is kept
    assert _row(short) == _row(full)
    assert normalise("decision", short) is short


@pytest.mark.parametrize(("change", "field"), [
    ({"actor": {"id": "emp-1", "badge": "x"}}, "actor.badge"),  # the contract is closed: nothing undeclared
    ({"changed": ["bank_account"]}, "changed"),  # the SIEM's old private field is no longer accepted
    ({"recipient": "agency-tax"}, "recipient"),  # a recipient is an object with a type
    ({"citizen_ref": "cr_" + "a" * 52}, "citizen_ref"),  # the contract's pattern: upper-case base32
    ({"citizen_ref": "cr_VIP0001"}, "citizen_ref"),
    ({"bank_account_ref": "ba_MULE0001"}, "bank_account_ref"),
    ({"seq": "7"}, "seq"),
    ({"seq": -1}, "seq"),
    ({"leaf_hash": "AB" * 32}, "leaf_hash"),
    ({"via": {"ip": "A123456789"}}, "via.ip"),  # the PII screen on every string
    ({"type": "pii.disclose"}, "recipient"),  # the contract's own rules: a disclosure names its recipient
    ({"event_id": None}, "event_id"),
])
def test_what_the_ledger_would_refuse_the_siem_refuses(change: dict, field: str) -> None:
    good = _ledger_doc(3, type="pii.read", time=T0, actor={"id": "emp-1"}, citizen_ref=REF)
    validate("provenance", good)
    bad = {k: v for k, v in {**good, **change}.items() if v is not None}  # None: the key left out
    with pytest.raises(EventError) as exc:
        validate("provenance", bad)
    assert f"field {field}:" in str(exc.value) or f"event: {field}:" in str(exc.value)
    assert "A123456789" not in str(exc.value)


def test_fraud_broker_pattern_from_ledger_shaped_events_raises_its_alert() -> None:
    actor = {"id": "emp-0321", "type": "staff", "roles": ["counter_staff"], "unit": "taipei-01"}
    read = _ledger_doc(0, type="pii.read", time=T0, actor=actor, citizen_ref=REF, dataset="insured_persons",
                       record_id="7", fields=["name", "bank_account"], purpose={"code": "data_correction"},
                       effect="permit")
    update = _ledger_doc(1, type="pii.update", time=T0 + timedelta(hours=5), actor=actor, citizen_ref=REF,
                         dataset="insured_persons", record_id="7", fields=["bank_account"],
                         purpose={"code": "data_correction", "case_id": "C-1"}, effect="permit")
    disclose = _ledger_doc(2, type="pii.disclose", time=T0, actor=actor, citizen_ref=REF, dataset="insured_persons",
                           record_id="7", fields=["name"], purpose={"code": "x", "legal_basis": "TCA-Art-30"},
                           recipient={"type": "agency", "id": "agency-tax"}, derived_from=[read["event_id"]])
    engine = _engine([read, update, disclose])
    assert engine.store.quarantined() == []
    rows = engine.conn.execute("SELECT actor, recipient, changed FROM ev_provenance ORDER BY ts, rid").fetchall()
    assert ("emp-0321", "agency-tax", None) in rows and ("emp-0321", None, "|bank_account|") in rows
    engine.run()
    alerts = engine.alerts.list()
    fraud = [a for a in alerts if a.rule_name == "fraud_broker_read_then_account_change"]
    assert fraud and {read["event_id"], update["event_id"]} <= set(fraud[0].evidence)


def test_a_citizen_requested_change_is_not_the_fraud_pattern() -> None:
    actor = {"id": "emp-0100", "type": "staff"}
    read = _ledger_doc(0, type="pii.read", time=T0, actor=actor, citizen_ref=REF, fields=["bank_account"],
                       purpose={"code": "bank_account_change"})
    update = _ledger_doc(1, type="pii.update", time=T0 + timedelta(minutes=3), actor=actor, citizen_ref=REF,
                         fields=["bank_account"], purpose={"code": "bank_account_change"})
    engine = _engine([read, update])
    engine.run()
    assert engine.store.count("provenance") == 2
    assert not [a for a in engine.alerts.list() if a.rule_name == "fraud_broker_read_then_account_change"]
