"""Decrypt with a decision: token checks, provenance before plaintext, masking, fail closed.

Uses the real pdp decision tokens and the real provenance recorder over a real SQLite ledger.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import keymgmt
import pdp
from keymgmt import DecryptRefused, ProtectedReader

ISSUER = "https://ztcp.local/pdp"


@pytest.fixture
def setup(tmp_path: Path, local_ring, decision_key, ledger_recorder, kit):
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'protected.db'}")
    rows = kit.create_people(engine, 5)
    et = kit.make_table(engine, local_ring)
    keymgmt.encrypt_table(et)
    signer = pdp.DecisionTokenSigner(decision_key, ISSUER, ttl_seconds=60)
    audit = keymgmt.KeyAuditLog(tmp_path / "keyaudit.db")
    reader = ProtectedReader(et, signer.verifier(), ledger_recorder, audit)
    return rows, et, signer, reader, ledger_recorder, audit


def _token(signer: pdp.DecisionTokenSigner, row: dict, *, now: float | None = None, **over) -> str:
    claims = {
        "jti": str(uuid.uuid4()), "sub": "staff-0042", "effect": "permit", "action": "read",
        "citizen_ref": row["cref"], "dataset": "insured_persons", "record_id": str(row["id"]),
        "fields": ["national_id", "phone", "note"], "purpose": "benefit_review", "case_id": "case-7",
        "obligations": [{"type": "mask", "field": "phone", "style": "last4"}],
    }
    claims.update(over)
    return signer.sign(claims, now=int(now) if now is not None else None)[0]


def _events(recorder) -> list:
    led = recorder.ledger
    return [e.event for e in led.entries()]


def test_permitted_read_records_then_returns_masked(setup) -> None:
    rows, et, signer, reader, rec, audit = setup
    tok = _token(signer, rows[3])
    got = reader.read(tok, 3, ["national_id", "phone", "note"], purpose="benefit_review",
                      via={"channel": "counter", "ip": "10.1.2.3"})
    assert got == {"national_id": rows[3]["national_id"], "phone": "******" + rows[3]["phone"][-4:],
                   "note": "ok"}
    (ev,) = _events(rec)
    assert ev.type == "pii.read" and ev.effect == "permit"
    assert ev.citizen_ref == rows[3]["cref"] and ev.record_id == "3" and ev.dataset == "insured_persons"
    assert ev.fields == ["national_id", "phone", "note"] and ev.purpose.code == "benefit_review"
    assert ev.purpose.case_id == "case-7" and ev.actor.id == "staff-0042" and ev.via.ip == "10.1.2.3"
    claims = pdp.verify_decision_token(tok, signer.verifier())
    assert ev.decision_id == claims.decision_id
    # Default fields = the decision's fields; a subset is fine.
    assert reader.read(tok, 3, ["national_id"]) == {"national_id": rows[3]["national_id"]}
    assert set(reader.read(tok, "3")) == {"national_id", "phone", "note"}


def _refused(setup, reason: str, token, record_id=3, fields=("national_id",), **kw) -> DecryptRefused:
    rows, et, signer, reader, rec, audit = setup
    before = len(_events(rec))
    with pytest.raises(DecryptRefused) as exc:
        reader.read(token, record_id, list(fields), **kw)
    assert exc.value.reason == reason
    assert exc.value.exit_code == 2
    for r in rows.values():  # no plaintext in the error
        assert r["national_id"] not in str(exc.value) and r["phone"] not in str(exc.value)
    evs = _events(rec)
    assert len(evs) == before + 1 and evs[-1].type == "pii.denied" and evs[-1].effect == "deny"
    last = list(audit.iter_since(0))[-1][1]
    assert last.type == "key.decrypt_refused" and last.reason == reason
    assert not any(e.type == "pii.read" for e in evs)
    return exc.value


def test_missing_token_refused(setup) -> None:
    _refused(setup, "missing_token", None)
    _refused(setup, "missing_token", "")


def test_expired_token_refused(setup) -> None:
    rows, _, signer, *_ = setup
    _refused(setup, "expired", _token(signer, rows[3], now=time.time() - 600))


def test_another_citizens_token_refused(setup) -> None:
    rows, _, signer, *_ = setup
    # A token for citizen 4 presented for record 3 (same record id claim, wrong citizen).
    _refused(setup, "wrong_citizen", _token(signer, rows[3], citizen_ref=rows[4]["cref"]))
    # A genuine token for record 4 presented for record 3.
    _refused(setup, "wrong_record", _token(signer, rows[4]))


def test_forged_and_non_permit_tokens_refused(setup) -> None:
    rows, _, signer, *_ = setup
    other = pdp.DecisionTokenSigner(Ed25519PrivateKey.generate(), ISSUER)
    _refused(setup, "unknown_key", _token(other, rows[3]))
    _refused(setup, "not_a_permit", _token(signer, rows[3], effect="deny"))
    tok = _token(signer, rows[3])
    _refused(setup, "bad_signature", tok[:-6] + ("AAAAAA" if not tok.endswith("AAAAAA") else "BBBBBB"))
    _refused(setup, "malformed", "not-a-token")


def test_scope_checks(setup) -> None:
    rows, _, signer, *_ = setup
    tok = _token(signer, rows[3])
    e = _refused(setup, "fields_not_permitted", tok, fields=("national_id", "bank_account"))
    assert "bank_account" in str(e)
    _refused(setup, "wrong_purpose", tok, purpose="marketing")
    _refused(setup, "wrong_dataset", _token(signer, rows[3], dataset="tax"))
    _refused(setup, "wrong_action", _token(signer, rows[3], action="update"))
    _refused(setup, "record_not_found", _token(signer, {**rows[3], "id": 999}), record_id=999)


def test_ledger_failure_means_no_plaintext(setup) -> None:
    rows, et, signer, reader, rec, audit = setup
    tok = _token(signer, rows[3])
    rec.ledger.close()  # a real failure: the ledger can no longer write
    with pytest.raises(DecryptRefused) as exc:
        reader.read(tok, 3, ["national_id"])
    assert exc.value.reason == "ledger_unavailable"
    assert rows[3]["national_id"] not in str(exc.value)
    last = list(audit.iter_since(0))[-1][1]
    assert last.type == "key.decrypt_refused" and last.reason == "ledger_unavailable"


def test_tampered_row_fails_after_recording(setup) -> None:
    rows, et, signer, reader, rec, audit = setup
    with et.engine.begin() as c:
        c.execute(sa.text("UPDATE people SET national_id = (SELECT national_id FROM people WHERE id = 1)"
                          " , ztcp_dek = (SELECT ztcp_dek FROM people WHERE id = 1) WHERE id = 3"))
    with pytest.raises(keymgmt.CiphertextError):
        reader.read(_token(signer, rows[3]), 3, ["national_id"])


def test_unknown_field_is_input_error(setup) -> None:
    rows, et, signer, reader, *_ = setup
    with pytest.raises(keymgmt.KeyMgmtError, match="unknown field"):
        reader.read(_token(signer, rows[3], fields=["ztcp_dek"]), 3, ["ztcp_dek"])


def test_event_the_ledger_schema_refuses_means_no_plaintext(setup) -> None:
    rows, et, signer, reader, rec, audit = setup
    with pytest.raises(DecryptRefused) as exc:
        # A caller puts a phone number in the channel: provenance refuses raw personal values.
        reader.read(_token(signer, rows[3]), 3, ["national_id"], via={"channel": "0912345678"})
    assert exc.value.reason == "provenance_rejected"
    assert not [e for e in _events(rec) if e.type == "pii.read"]


def test_search_is_decision_gated_and_recorded(setup) -> None:
    rows, et, signer, reader, rec, audit = setup
    tok = _token(signer, {**rows[2], "id": ""}, action="search", fields=["national_id"], record_id=None)
    assert reader.search(tok, "national_id", rows[2]["national_id"].lower()) == [2]
    ev = _events(rec)[-1]
    assert ev.type == "pii.search" and ev.citizen_ref == rows[2]["cref"] and ev.fields == ["national_id"]
    assert ev.record_id is None
    # The same permit cannot find another citizen's record.
    assert reader.search(tok, "national_id", rows[4]["national_id"]) == []
    with pytest.raises(DecryptRefused, match="fields_not_permitted"):
        reader.search(tok, "phone", rows[2]["phone"])
    with pytest.raises(DecryptRefused, match="wrong_action"):
        reader.search(_token(signer, rows[2]), "national_id", rows[2]["national_id"])
    with pytest.raises(DecryptRefused, match="missing_token"):
        reader.search(None, "national_id", rows[2]["national_id"])
    rec.ledger.close()
    with pytest.raises(DecryptRefused, match="ledger_unavailable"):
        reader.search(tok, "national_id", rows[2]["national_id"])
