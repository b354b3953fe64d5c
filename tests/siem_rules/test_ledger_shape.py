"""Provenance events as the ledger writes them (docs/design.md, Contracts: actor and recipient are objects, a
pii.update names its changed fields in ``fields``) are detected, not quarantined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import contracts
from siem_rules import CallableSource, Engine, RulePack, SiemConfig, connect
from siem_rules.events import normalise

REF = "cr_" + "A" * 52
T0 = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Taipei


def _ledger_doc(**fields) -> dict:
    """The JSON the provenance ledger stores and ``Ledger.events_after`` returns."""
    return contracts.ProvenanceEvent(**fields).model_dump(mode="json", exclude_none=True)


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


def test_actor_and_recipient_objects_become_ids_and_update_fields_become_changed() -> None:
    doc = _ledger_doc(type="pii.update", time=T0, actor={"id": "emp-0321", "type": "staff", "roles": ["x"]},
                      citizen_ref=REF, dataset="insured_persons", record_id="7", fields=["bank_account"],
                      purpose={"code": "data_correction"})
    assert isinstance(doc["actor"], dict)
    out = normalise("provenance", doc)
    assert out["actor"] == "emp-0321" and out["changed"] == ["bank_account"]
    assert doc["actor"]["id"] == "emp-0321"  # the caller's event is not modified
    flat = {"type": "pii.read", "actor": "emp-1", "event_id": "e", "time": "2026-03-04T02:00:00Z"}
    assert normalise("provenance", flat) is flat  # already in the SIEM's shape: untouched
    assert normalise("decision", doc) is doc


def test_fraud_broker_pattern_from_ledger_shaped_events_raises_its_alert() -> None:
    actor = {"id": "emp-0321", "type": "staff", "roles": ["counter_staff"], "unit": "taipei-01"}
    read = _ledger_doc(type="pii.read", time=T0, actor=actor, citizen_ref=REF, dataset="insured_persons",
                       record_id="7", fields=["name", "bank_account"], purpose={"code": "data_correction"},
                       effect="permit")
    update = _ledger_doc(type="pii.update", time=T0 + timedelta(hours=5), actor=actor, citizen_ref=REF,
                         dataset="insured_persons", record_id="7", fields=["bank_account"],
                         purpose={"code": "data_correction", "case_id": "C-1"}, effect="permit")
    disclose = _ledger_doc(type="pii.disclose", time=T0, actor=actor, citizen_ref=REF, dataset="insured_persons",
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
    read = _ledger_doc(type="pii.read", time=T0, actor=actor, citizen_ref=REF, fields=["bank_account"],
                       purpose={"code": "bank_account_change"})
    update = _ledger_doc(type="pii.update", time=T0 + timedelta(minutes=3), actor=actor, citizen_ref=REF,
                         fields=["bank_account"], purpose={"code": "bank_account_change"})
    engine = _engine([read, update])
    engine.run()
    assert not [a for a in engine.alerts.list() if a.rule_name == "fraud_broker_read_then_account_change"]
