"""The batch gate (government exchange): one batch decision opens it; each chunk's events are durable
before the chunk is decrypted; nothing that was not recorded through it can be decrypted; a ledger
failure decrypts nothing. Real decision tokens, a real table, a real SQLite ledger."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import contracts
import keymgmt
import pdp
from keymgmt import BatchReader, DecryptRefused

ISSUER = "https://ztcp.local/pdp"
AGENCY = {"type": "agency", "id": "agency-tax"}


@pytest.fixture
def setup(tmp_path: Path, local_ring, decision_key, ledger_recorder, kit):
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'protected.db'}")
    rows = kit.create_people(engine, 6)
    et = kit.make_table(engine, local_ring)
    keymgmt.encrypt_table(et)
    signer = pdp.DecisionTokenSigner(decision_key, ISSUER, ttl_seconds=60)
    return rows, BatchReader(et, signer.verifier(), ledger_recorder), signer, ledger_recorder


def _token(signer, **over) -> str:  # noqa: ANN001
    claims = {"jti": str(uuid.uuid4()), "sub": "emp-xo", "effect": "permit", "action": "disclose",
              "dataset": "insured_persons", "fields": ["national_id", "phone"], "purpose": "agency_exchange",
              "recipient": AGENCY}
    claims.update(over)
    return signer.sign(claims)[0]


def _events(rows: list[dict]) -> list:
    return [contracts.ProvenanceEvent(type="pii.disclose", actor="emp-xo", citizen_ref=r["cref"],
                                      dataset="insured_persons", record_id=str(r["id"]), fields=["phone"],
                                      purpose={"code": "agency_exchange", "legal_basis": "TCA-Art-30"},
                                      recipient=AGENCY, exchange={"agency": "agency-tax", "agreement_id": "A-1",
                                                                  "transfer_id": "xfer_1"}) for r in rows]


def test_a_batch_records_each_chunk_before_decrypting_it(setup) -> None:
    rows, reader, signer, rec = setup
    grant = reader.open(_token(signer), ["phone"], AGENCY)
    found = reader.fetch(grant, citizen_refs=[rows[i]["cref"] for i in (1, 2, 3)])
    assert {r["id"] for r in found} == {1, 2, 3} and all(r["phone"].startswith("ze1:") for r in found)
    found.sort(key=lambda r: r["id"])
    values, receipts = reader.release(grant, found, _events(found))
    assert [v["phone"] for v in values] == [rows[i]["phone"] for i in (1, 2, 3)]
    assert [e.event.record_id for e in rec.ledger.entries()] == ["1", "2", "3"] and len(receipts) == 3
    by_index = reader.fetch(grant, blind_indexes=reader.indexes_for("national_id", rows[5]["national_id"]),
                            column="national_id")
    assert [r["id"] for r in by_index] == [5]

    # Rows not recorded through this reader cannot be decrypted; a record is decrypted once.
    recorded = reader.record(grant, by_index, _events(by_index))
    assert reader.decrypt(grant, recorded)[0]["phone"] == rows[5]["phone"]
    with pytest.raises(keymgmt.KeyMgmtError):
        reader.decrypt(grant, recorded)
    forged = keymgmt.batch.Recorded(grant, tuple(found), [])
    with pytest.raises(keymgmt.KeyMgmtError):
        reader.decrypt(grant, forged)


@pytest.mark.parametrize(("over", "reason"), [
    ({"action": "read"}, "wrong_action"),
    ({"dataset": "claims"}, "wrong_dataset"),
    ({"citizen_ref": "cr_" + "A" * 52}, "not_a_batch_decision"),
    ({"recipient": {"type": "agency", "id": "agency-other"}}, "wrong_recipient"),
    ({"fields": ["national_id"]}, "fields_not_permitted"),
])
def test_only_a_batch_disclosure_permit_for_this_recipient_and_fields_opens_it(setup, over, reason) -> None:
    _, reader, signer, _ = setup
    with pytest.raises(DecryptRefused) as e:
        reader.open(_token(signer, **over), ["phone"], AGENCY)
    assert e.value.reason == reason


def test_a_ledger_failure_decrypts_nothing(setup) -> None:
    rows, reader, signer, rec = setup
    grant = reader.open(_token(signer), ["phone"], AGENCY)
    found = reader.fetch(grant, citizen_refs=[rows[1]["cref"]])
    rec.ledger.close()
    with pytest.raises(DecryptRefused) as e:
        reader.release(grant, found, _events(found))
    assert e.value.reason == "ledger_unavailable"
