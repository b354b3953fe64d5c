"""The exchange's building blocks on their own: the sealed payload format, the input file, the fast
per-citizen event bytes, the fast citizen_ref."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import contracts
from contracts.national_id import _citizen_ref_reference
from exchange import inputs
from exchange.crypto import SealedWriter, open_sealed, seal_header
from exchange.errors import ExchangeInputError, ExchangeIntegrityError
from exchange.service import _DisclosureEvents, _event_id, _merge_seqs
from siem_rules.fixtures import synthetic_national_id


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 519_999_999), st.binary(min_size=16, max_size=64))
def test_the_fast_citizen_ref_is_rfc4648_base32(n: int, key: bytes) -> None:
    nid = synthetic_national_id(n)
    assert contracts.citizen_ref(nid, key) == _citizen_ref_reference(nid, key)


def _sealed(tmp_path: Path, segments: list[bytes]) -> tuple[Path, X25519PrivateKey, list[bytes]]:
    key = X25519PrivateKey.generate()
    cek = os.urandom(32)
    header = seal_header(transfer_id="xfer_t1", agreement_id="A-1", recipient=key.public_key(), cek=cek)
    w = SealedWriter(header, cek)
    parts = [w.segment(s, last=i == len(segments) - 1) for i, s in enumerate(segments)]
    path = tmp_path / "p.ztcp"
    path.write_bytes(header + b"".join(parts))
    return path, key, [header, *parts]


def test_the_sealed_payload_opens_in_order_and_refuses_tampering(tmp_path: Path) -> None:
    path, key, parts = _sealed(tmp_path, [b"a\n", b"b\n", b"trailer"])
    _head, segs = open_sealed(path, key)
    assert list(segs) == [b"a\n", b"b\n", b"trailer"]
    header, s0, s1, s2 = parts
    for name, data in (("reordered", header + s1 + s0 + s2), ("truncated", header + s0 + s1),
                       ("dropped", header + s0 + s2), ("appended", header + s0 + s1 + s2 + s2)):
        path.write_bytes(data)
        with pytest.raises(ExchangeIntegrityError):
            list(open_sealed(path, key)[1])
        assert name
    path.write_bytes(header.replace(b"A-1", b"A-2") + s0 + s1 + s2)  # the header is authenticated
    with pytest.raises(ExchangeIntegrityError):
        list(open_sealed(path, key)[1])
    path.write_bytes(header + s0 + s1 + s2)
    with pytest.raises(ExchangeIntegrityError):  # another agency's key opens nothing
        open_sealed(path, X25519PrivateKey.generate())


def test_input_formats_and_malformed_lines(tmp_path: Path) -> None:
    key = os.urandom(32)
    a, b = synthetic_national_id(11), synthetic_national_id(12)
    ref = contracts.citizen_ref(b, key)
    files = {
        "plain.csv": f"{a}\n{ref}\n",
        "header.csv": f"other,national_id\nx,{a}\ny,{b}\n",
        "bare.jsonl": json.dumps(a) + "\n\n" + json.dumps(ref) + "\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        got = [(c.line, c.citizen_ref, c.by_id) for c, _ in inputs.parse(tmp_path / name, key)]
        assert [g[1] for g in got] == [contracts.citizen_ref(a, key), ref], name
    (tmp_path / "long.csv").write_text("national_id\n" + a + "\n" + "x" * 5000 + "\n")
    with pytest.raises(ExchangeInputError, match="input line 3: longer"):
        list(inputs.parse(tmp_path / "long.csv", key))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"national_id": a}) + "\n{not json\n")
    with pytest.raises(ExchangeInputError, match="input line 2: not valid JSON"):
        list(inputs.parse(tmp_path / "bad.jsonl", key))
    (tmp_path / "both.jsonl").write_text(json.dumps({"national_id": a, "citizen_ref": ref}) + "\n")
    with pytest.raises(ExchangeInputError, match="exactly one"):
        list(inputs.parse(tmp_path / "both.jsonl", key))


def test_fast_disclosure_events_are_the_contracts_bytes() -> None:
    factory = _DisclosureEvents(
        type="pii.disclose", actor={"id": "emp-1", "type": "staff", "roles": ["exchange_officer"]},
        via={"system": "ztcp-exchange", "channel": "exchange"}, dataset="insured_persons", fields=["name"],
        purpose={"code": "agency_exchange", "legal_basis": "TCA-Art-30"}, decision_id="d-1", effect="permit",
        recipient={"type": "agency", "id": "agency-tax", "channel": "exchange"},
        exchange={"agency": "agency-tax", "agreement_id": "A-1", "transfer_id": "xfer_1"})
    when = datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=UTC)
    make = factory.for_time(when)
    ref = contracts.citizen_ref(synthetic_national_id(5), b"k" * 32)
    for rid in ("17", "R-0001", "a b"):  # the last one needs the slow path (not pattern-safe)
        eid = _event_id("xfer_1", 3, rid)
        fast = make(ref, eid, rid)
        slow = contracts.ProvenanceEvent(**factory.fields, time=when, citizen_ref=ref, event_id=eid, record_id=rid)
        assert fast.body == slow.canonical_bytes() and fast.event_id == eid
    assert _event_id("xfer_1", 3, "17") == _event_id("xfer_1", 3, "17") != _event_id("xfer_1", 4, "17")


def test_seq_ranges_merge() -> None:
    assert _merge_seqs([], [5, 3, 4, 9]) == [[3, 5], [9, 9]]
    assert _merge_seqs([[3, 5], [9, 9]], [6, 7, 8, 20]) == [[3, 9], [20, 20]]
