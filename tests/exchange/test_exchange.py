"""Government data exchange end to end with real components: the sealed keyring, an encrypted
insured_persons table, the default pack with a signed agreements register, the PDP, the ledger,
and a real RFC 3161 TSA (OpenSSL behind HTTP; verified by rfc3161-client)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

import exchange
from exchange.crypto import open_sealed, sign_jws
from exchange.service import PAYLOAD, RECEIPT, STAMP, inbound_statement, receipt_for
from exchange.verify import verify_transfer
from provenance.timestamp import TsaVerifier
from provenance.trace import trace_citizen

ROOT = Path(__file__).resolve().parents[2]


def _helper(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "helpers" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ew = _helper("exchange_world")
tsa_helper = _helper("tsa")
AGREEMENT = "DSA-2026-001"


@pytest.fixture
def tsa(tmp_path: Path):
    with tsa_helper.TestTsa(tmp_path / "tsa") as t:
        yield t


@pytest.fixture
def world(ztcp_home: Path, tsa):
    w = ew.World(ztcp_home, n=30, tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file))
    yield w
    w.close()


def _records(directory: Path, key) -> list[dict]:  # noqa: ANN001
    _head, segments = open_sealed(directory / PAYLOAD, key)
    segs = list(segments)
    return [json.loads(line) for seg in segs[:-1] for line in seg.splitlines()]


def test_a_batch_is_decided_once_recorded_per_citizen_sealed_signed_stamped_and_verifies_offline(
        world, tmp_path: Path, tsa) -> None:
    ids = [1, 2, 3, 5, 8]
    out = tmp_path / "out"
    summary = world.rt.exchange.send(world.operator(), AGREEMENT, world.input_file(tmp_path / "in.csv", ids), out)
    assert summary["citizens"] == 5 and summary["not_found"] == 0 and summary["timestamp"] == "stamped"
    assert summary["fields"] == ["name", "address", "national_id"] and len(summary["decision_ids"]) == 1

    # Every citizen's disclosure is in the ledger, naming the transfer, the agency and the one decision.
    disclosures = [e for e in world.events("pii.disclose") if e.exchange is not None]
    assert sorted(e.citizen_ref for e in disclosures) == sorted(world.ref(i) for i in ids)
    for e in disclosures:
        assert e.exchange.transfer_id == summary["transfer_id"] and e.recipient.id == "agency-tax"
        assert e.decision_id == summary["decision_ids"][0] and e.purpose.legal_basis == "TCA-Art-30"
        assert e.fields == ["name", "address", "national_id"]
    [transfer] = world.events("exchange.transfer")
    assert transfer.exchange.payload_sha256 == summary["payload_sha256"]
    assert transfer.exchange.record_sha256 == summary["record_sha256"] and transfer.exchange.citizens == 5

    # The agency opens exactly the permitted fields of exactly these citizens, tagged by input line.
    recs = _records(out, world.tax.decryption)
    assert [r["line"] for r in recs] == [2, 3, 4, 5, 6]
    for r, i in zip(recs, ids, strict=True):
        nid, name, addr, _phone, _bank = world.people[i]
        assert r == {"line": r["line"], "name": name, "address": addr, "national_id": nid}
    assert world.people[1][0].encode() not in (out / PAYLOAD).read_bytes()  # sealed, never plaintext

    # A citizen's trace shows the disclosure with a verified inclusion proof.
    world.rt.ledger.checkpoint()
    trace = trace_citizen(world.rt.ledger, world.ref(3))
    [traced] = [t for t in trace.events if t.event.type == "pii.disclose"]
    assert traced.verified is True and traced.event.exchange.transfer_id == summary["transfer_id"]

    # Offline: digest, signature, TSA time-stamp, ledger inclusion; the receipt is outstanding.
    result = verify_transfer(out, tsa_verifier=TsaVerifier.from_pem_file(tsa.ca_file),
                             decryption_key=world.tax.decryption)
    assert result.ok, result.as_dict()
    assert {c.name: c.status for c in result.checks} == {
        "signature": "ok", "payload": "ok", "decryption": "ok", "time-stamp": "ok", "receipt": "outstanding",
        "ledger": "ok"}

    # The agency's receipt over the digest it computed is recorded, and then verifies offline too.
    rec = world.rt.exchange.record_receipt(receipt_for(out, world.tax.signing))
    assert rec["status"] == "received"
    [ack] = world.events("exchange.receipt")
    assert ack.exchange.transfer_id == summary["transfer_id"]
    assert ack.exchange.payload_sha256 == summary["payload_sha256"]
    assert (out / RECEIPT).exists()
    final = verify_transfer(out, tsa_verifier=TsaVerifier.from_pem_file(tsa.ca_file), require_receipt=True)
    assert final.ok and {c.name: c.status for c in final.checks}["receipt"] == "ok"


def test_verify_names_what_was_tampered_with(world, tmp_path: Path, tsa) -> None:
    out = tmp_path / "out"
    world.rt.exchange.send(world.operator(), AGREEMENT, world.input_file(tmp_path / "in.csv", [1, 2]), out)
    anchor = TsaVerifier.from_pem_file(tsa.ca_file)

    def failing(d: Path) -> str:
        r = verify_transfer(d, tsa_verifier=anchor)
        bad = r.first_failure()
        return bad.name if bad else "none"

    assert failing(out) == "none"
    for name, damage, expected in (
        (PAYLOAD, lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\x00"), "payload"),
        ("transfer.json", lambda p: p.write_text(p.read_text().replace('"citizens": 2', '"citizens": 3')), "signature"),
        (STAMP, lambda p: p.write_bytes(p.read_bytes()[:-10] + b"\x00" * 10), "time-stamp"),
        ("ledger.json", lambda p: p.write_text(p.read_text().replace('"seq": ', '"seq": 1', 1)), "ledger"),
    ):
        copy = tmp_path / f"copy-{name}"
        shutil.copytree(out, copy)
        damage(copy / name)
        assert failing(copy) == expected, name
    # A receipt signed with another key is a failure offline too.
    copy = tmp_path / "copy-receipt"
    shutil.copytree(out, copy)
    (copy / RECEIPT).write_text(receipt_for(copy, world.labour.signing))
    assert failing(copy) == "receipt"


def test_a_receipt_over_the_wrong_digest_or_with_the_wrong_key_is_refused_and_recorded(world, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = world.rt.exchange.send(world.operator(), AGREEMENT, world.input_file(tmp_path / "in.csv", [4]), out)
    wrong_key = receipt_for(out, world.labour.signing)  # signed by another agency's key
    with pytest.raises(exchange.ExchangeRefused) as e1:
        world.rt.exchange.record_receipt(wrong_key)
    assert e1.value.reasons == ["bad_signature"]
    record = json.loads((out / "transfer.json").read_text())
    from contracts.exchange import RECEIPT_TYPE, ReceiptClaims

    claims = ReceiptClaims(transfer_id=record["transfer_id"], agreement_id=AGREEMENT, agency="agency-tax",
                           payload_sha256="0" * 64, received_at=datetime.now(UTC))
    with pytest.raises(exchange.ExchangeRefused) as e2:
        world.rt.exchange.record_receipt(sign_jws(world.tax.signing, claims.model_dump_json().encode(), RECEIPT_TYPE))
    assert e2.value.reasons == ["wrong_digest"]
    refused = world.events("exchange.receipt_refused")
    assert [e.exchange.reason for e in refused] == ["bad_signature", "wrong_digest"]
    assert all(e.exchange.transfer_id == summary["transfer_id"] for e in refused)
    assert world.events("exchange.receipt") == []
    assert world.rt.exchange.store.get(summary["transfer_id"]).receipt_status == "outstanding"


def test_bad_input_sends_nothing_and_never_echoes_an_id(world, tmp_path: Path) -> None:
    svc, op = world.rt.exchange, world.operator()
    bad = tmp_path / "bad.csv"
    nid = world.people[1][0]
    bad.write_text(f"national_id\n{nid}\n{world.people[2][0]}\nA12345678X\n")
    with pytest.raises(exchange.ExchangeInputError) as e:
        svc.send(op, AGREEMENT, bad, tmp_path / "o1")
    assert "input line 4" in str(e.value) and "A12345678X" not in str(e.value)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps({"national_id": nid}) + "\n" + json.dumps({"citizen_ref": world.ref(2)}) + "\n"
                   + json.dumps({"citizen_ref": world.ref(1)}) + "\n")  # line 3 is citizen 1 again, by reference
    with pytest.raises(exchange.ExchangeInputError) as e:
        svc.send(op, AGREEMENT, dup, tmp_path / "o2")
    assert "line 3 repeats 1" in str(e.value) and nid not in str(e.value)
    assert world.events("pii.disclose") == [] and not (tmp_path / "o1" / PAYLOAD).exists()

    good = world.input_file(tmp_path / "good.csv", [1])
    for agreement_id, reason in (("DSA-NOPE", "unknown_agreement"), ("DSA-2026-SUSP", "agreement_suspended"),
                                 ("DSA-2020-OLD", "agreement_expired")):
        with pytest.raises(exchange.ExchangeRefused) as r:
            svc.send(op, agreement_id, good, tmp_path / f"o-{agreement_id}")
        assert r.value.reasons == [reason] and r.value.exit_code == 2
    with pytest.raises(exchange.ExchangeRefused) as r:  # the PDP: a case officer may not run batches
        svc.send(world.operator("case_officer", "emp-co-1"), AGREEMENT, good, tmp_path / "o3")
    assert "exchange_role_required" in r.value.reasons
    assert world.events("pii.disclose") == []


def test_fields_outside_the_agreement_are_withheld_and_unknown_ids_counted_not_listed(world, tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    stranger = ew.people(1, offset=999)[1][0]  # a valid national ID the database does not hold
    inp.write_text("\n".join(json.dumps(x) for x in (
        {"citizen_ref": world.ref(6)}, {"national_id": stranger}, {"national_id": world.people[7][0]})) + "\n")
    out = tmp_path / "out"
    summary = world.rt.exchange.send(world.operator(), AGREEMENT, inp, out, fields=["name", "bank_account"])
    assert summary["fields"] == ["name"] and summary["withheld_fields"] == ["bank_account"]
    assert summary["citizens"] == 2 and summary["not_found"] == 1
    recs = _records(out, world.tax.decryption)
    assert [set(r) for r in recs] == [{"line", "name"}] * 2
    assert stranger not in json.dumps(summary) and stranger not in (out / "transfer.json").read_text()


def test_tsa_unreachable_refuse_or_later_and_the_gap_shown_by_verify(ztcp_home: Path, tmp_path: Path, tsa) -> None:
    w = ew.World(ztcp_home, n=5, tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file), exchange_tsa_unavailable="refuse")
    try:
        tsa.down = True
        with pytest.raises(exchange.ExchangeRefused) as r:
            w.rt.exchange.send(w.operator(), AGREEMENT, w.input_file(tmp_path / "in.csv", [1]), tmp_path / "o1")
        assert r.value.reasons == ["tsa_unavailable"] and w.events("pii.disclose") == []
        w.rt.exchange.config.tsa_policy = "later"
        out = tmp_path / "o2"
        summary = w.rt.exchange.send(w.operator(), AGREEMENT, w.input_file(tmp_path / "in.csv", [1, 2]), out)
        assert summary["timestamp"] == "pending"
        anchor = TsaVerifier.from_pem_file(tsa.ca_file)
        gap = verify_transfer(out, tsa_verifier=anchor)
        assert gap.first_failure().name == "time-stamp" and "missing" in gap.first_failure().detail
        tsa.down = False
        assert w.rt.exchange.stamp_pending() == 1
        assert verify_transfer(out, tsa_verifier=anchor).ok
        assert w.rt.exchange.store.get(summary["transfer_id"]).timestamp_status == "stamped"
    finally:
        w.close()


def test_overdue_receipt_is_recorded_once_and_alerts(ztcp_home: Path, tmp_path: Path, tsa) -> None:
    w = ew.World(ztcp_home, n=5, tsa_url=tsa.url, tsa_ca_file=str(tsa.ca_file))
    try:
        summary = w.rt.exchange.send(w.operator(), AGREEMENT, w.input_file(tmp_path / "in.csv", [1, 2]),
                                     tmp_path / "out")
        assert w.rt.exchange.sweep_overdue() == []
        now = [w.rt.exchange.clock() + 25 * 3600]  # the default deadline is 24 h
        w.rt.exchange.clock = lambda: now[0]
        assert w.rt.exchange.sweep_overdue() == [summary["transfer_id"]]
        assert w.rt.exchange.sweep_overdue() == []  # once
        [overdue] = w.events("exchange.receipt_overdue")
        assert overdue.exchange.transfer_id == summary["transfer_id"] and overdue.recipient.id == "agency-tax"
        rows = {r["agreement_id"]: r for r in w.rt.exchange.agreement_status()}
        assert rows[AGREEMENT]["receipts_overdue"] == 1 and rows["DSA-2026-SUSP"]["status"] == "suspended"

        # The SIEM rule over the ledger's events raises the alert.
        import sqlite3

        from siem_rules import Engine, RulePack
        from siem_rules.sources import CallableSource

        engine = Engine(sqlite3.connect(":memory:"), RulePack())
        engine.ingest([CallableSource("ledger", "provenance", w.rt.ledger.events_after)])
        engine.run(rules=[engine.pack.find("exchange_receipt_overdue")])
        alerts = engine.alerts.list()
        assert [a.rule_name for a in alerts] == ["exchange_receipt_overdue"]
        assert alerts[0].group_keys == {"recipient": "agency-tax"}
    finally:
        w.close()


def test_inbound_data_is_recorded_per_citizen_with_the_senders_signature_verified(world, tmp_path: Path) -> None:
    payload = tmp_path / "from-labour.bin"
    payload.write_bytes(b"whatever the agency sent, kept by the bureau; ztcp keeps its digest")
    citizens = world.input_file(tmp_path / "citizens.csv", [2, 9])
    args = {"transfer_id": "xfer_labour0001", "agreement_id": "DSA-LAB-1", "agency": "agency-labour", "citizens": 2}
    forged = inbound_statement(payload, world.tax.signing, **args)  # not the labour agency's key
    with pytest.raises(exchange.ExchangeIntegrityError):
        world.rt.exchange.receive(world.operator(), "DSA-LAB-1", payload, forged, citizens)
    good = inbound_statement(payload, world.labour.signing, **args)
    result = world.rt.exchange.receive(world.operator(), "DSA-LAB-1", payload, good, citizens)
    assert result["citizens"] == 2
    received = world.events("pii.receive")
    assert sorted(e.citizen_ref for e in received) == sorted([world.ref(2), world.ref(9)])
    assert all(e.exchange.direction == "inbound" and e.exchange.agency == "agency-labour" for e in received)
    world.rt.ledger.checkpoint()
    trace = trace_citizen(world.rt.ledger, world.ref(9))
    assert [(t.event.type, t.verified) for t in trace.events] == [("pii.receive", True)]
    with pytest.raises(exchange.ExchangeInputError):  # the same transfer twice
        world.rt.exchange.receive(world.operator(), "DSA-LAB-1", payload, good, citizens)
