"""Offline verification of a transfer directory, for the receiving agency or an auditor
(``ztcp exchange verify DIR``): no server, no database, only the directory and trust anchors.

Checks, in order, each one named in the result:

* ``signature``  — ``transfer.jws`` verifies with the bureau's exchange key and signs exactly the
  record in ``transfer.json`` (RFC 8785 bytes);
* ``payload``    — SHA-256 and size of ``payload.ztcp`` are the record's, and its header names this
  transfer and the agency key the record names;
* ``time-stamp`` — ``transfer.tsr`` is an RFC 3161 token over the signature, from a TSA chaining to
  the trust anchor given (``--tsa-ca`` or ``ZTCP_TSA_CA_FILE``), not earlier than the transfer
  began; missing while the record says a TSA was configured is the gap, and fails;
* ``receipt``    — ``receipt.jws``, when present, is signed with the key whose thumbprint the
  record names and acknowledges exactly this payload; absent is *outstanding* (a failure only with
  ``require_receipt``);
* ``ledger``     — ``ledger.json`` holds the ``exchange.transfer`` event naming this record's digest,
  with an RFC 9162 inclusion proof against a checkpoint signed by the ledger's key.

Keys come from ``keys.json`` unless pinned (``signing_key``, ``checkpoint_key``): the directory's
own keys prove consistency; pinned keys, obtained from the bureau out of band, prove origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.exchange import RECEIPT_TYPE, TRANSFER_TYPE, ReceiptClaims, TransferRecord
from exchange.crypto import (
    MAGIC,
    jws_signature,
    load_private_jwk,
    load_public_jwk,
    open_sealed,
    sha256_file,
    thumbprint,
    verify_jws,
)
from exchange.errors import ExchangeError, ExchangeInputError, ExchangeIntegrityError
from exchange.service import KEYS, PAYLOAD, PROOF, RECEIPT, RECORD, SIGNATURE, STAMP


@dataclass
class Check:
    name: str
    status: str  # ok | FAILED | outstanding | none
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"


@dataclass
class VerifyResult:
    transfer_id: str | None
    checks: list[Check] = field(default_factory=list)
    record: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if c.failed), None)

    def as_dict(self) -> dict[str, Any]:
        return {"transfer_id": self.transfer_id, "ok": self.ok,
                "checks": [{"check": c.name, "status": c.status, "detail": c.detail} for c in self.checks],
                "citizens": (self.record or {}).get("citizens"), "agency": (self.record or {}).get("agency"),
                "agreement_id": (self.record or {}).get("agreement_id")}


def _read(d: Path, name: str) -> bytes | None:
    p = d / name
    return p.read_bytes() if p.is_file() else None


def verify_transfer(directory: Path, *, tsa_verifier: Any = None, signing_key: Any = None,
                    checkpoint_key: str | None = None, require_receipt: bool = False,
                    decryption_key: Any = None) -> VerifyResult:
    d = Path(directory)
    if not d.is_dir():
        raise ExchangeInputError(f"{d}: not a transfer directory")
    raw_record, raw_sig = _read(d, RECORD), _read(d, SIGNATURE)
    if raw_record is None or raw_sig is None:
        raise ExchangeInputError(f"{d}: no {RECORD} / {SIGNATURE}: not a transfer directory")
    try:
        record = TransferRecord.model_validate_json(raw_record)
    except ValidationError:
        raise ExchangeIntegrityError(f"{RECORD}: not a ztcp transfer record") from None
    result = VerifyResult(record.transfer_id, record=record.model_dump(mode="json"))
    keys = json.loads(_read(d, KEYS) or b"{}")
    token = raw_sig.decode("ascii", "replace").strip()

    # signature
    try:
        key = signing_key or load_public_jwk(keys.get("exchange_signing"), "Ed25519", f"{KEYS} exchange_signing")
        signed = verify_jws(token, key, TRANSFER_TYPE, "transfer signature")
        if signed != record.canonical_bytes():
            raise ExchangeIntegrityError("the signature covers another record than transfer.json")
        result.checks.append(Check("signature", "ok", f"Ed25519 key {thumbprint(key)}"
                                   + (" (pinned)" if signing_key else f" (from {KEYS})")))
    except ExchangeError as exc:
        result.checks.append(Check("signature", "FAILED", exc.message))

    # payload
    payload = d / PAYLOAD
    if not payload.is_file():
        result.checks.append(Check("payload", "FAILED", f"{PAYLOAD} is missing"))
    else:
        h, n = sha256_file(payload)
        problems = []
        if h.hexdigest() != record.payload_sha256:
            problems.append("SHA-256 differs from the record's (the payload was changed)")
        if n != record.payload_bytes:
            problems.append(f"{n} bytes, the record says {record.payload_bytes}")
        with open(payload, "rb") as f:
            first, head = f.readline(), f.readline()
        try:
            header = json.loads(head) if first == MAGIC else {}
        except ValueError:
            header = {}
        if header.get("transfer_id") != record.transfer_id or \
                header.get("recipient_key") != record.encryption.recipient_key:
            problems.append("its header names another transfer or agency key")
        result.checks.append(Check("payload", "FAILED" if problems else "ok",
                                   "; ".join(problems) if problems else f"SHA-256 {record.payload_sha256}, {n} bytes"))
        if decryption_key is not None and not problems:
            result.checks.append(_decrypt_check(payload, decryption_key, record))

    # time-stamp
    stamp = _read(d, STAMP)
    if stamp is None:
        if record.tsa == "none":
            result.checks.append(Check("time-stamp", "none", "no TSA was configured when this transfer was signed"))
        else:
            result.checks.append(Check("time-stamp", "FAILED", "missing: the TSA was unreachable when the transfer "
                                                               "was signed (`ztcp exchange stamp` adds it)"))
    elif tsa_verifier is None:
        result.checks.append(Check("time-stamp", "FAILED", "present but not checked: no TSA trust anchor "
                                                           "(--tsa-ca or ZTCP_TSA_CA_FILE)"))
    else:
        try:
            when = tsa_verifier.verify(stamp, jws_signature(token))
            if when < record.started_at.replace(microsecond=0):
                raise ExchangeIntegrityError(f"the token's time {when.isoformat()} is before the transfer began")
            result.checks.append(Check("time-stamp", "ok", f"signature existed at {when.isoformat()} (TSA)"))
        except ExchangeError as exc:
            result.checks.append(Check("time-stamp", "FAILED", exc.message))
        except Exception as exc:  # noqa: BLE001 - provenance.TimestampInvalid and friends: name why
            result.checks.append(Check("time-stamp", "FAILED", f"does not verify: {exc}"))

    # receipt
    receipt = _read(d, RECEIPT)
    if receipt is None:
        result.checks.append(Check("receipt", "FAILED" if require_receipt else "outstanding",
                                   "no receipt from the agency yet"))
    else:
        try:
            rkey = load_public_jwk(keys.get("receipt_key"), "Ed25519", f"{KEYS} receipt_key")
            if thumbprint(rkey) != record.receipt_key:
                raise ExchangeIntegrityError("the receipt key is not the one the signed record names")
            claims = ReceiptClaims.model_validate_json(verify_jws(receipt.decode().strip(), rkey, RECEIPT_TYPE,
                                                                  "receipt"))
            if claims.payload_sha256 != record.payload_sha256:
                raise ExchangeIntegrityError("the receipt acknowledges other bytes than this payload")
            if (claims.transfer_id, claims.agreement_id, claims.agency) != \
                    (record.transfer_id, record.agreement_id, record.agency):
                raise ExchangeIntegrityError("the receipt names another transfer, agreement or agency")
            result.checks.append(Check("receipt", "ok", f"{record.agency} acknowledged it at "
                                                         f"{claims.received_at.isoformat()}"))
        except ValidationError:
            result.checks.append(Check("receipt", "FAILED", "its claims are not a ztcp receipt"))
        except ExchangeError as exc:
            result.checks.append(Check("receipt", "FAILED", exc.message))

    # ledger inclusion
    result.checks.append(_ledger_check(_read(d, PROOF), record, checkpoint_key or keys.get("checkpoint_key"),
                                       pinned=checkpoint_key is not None))
    return result


def _ledger_check(raw: bytes | None, record: TransferRecord, vkey: str | None, *, pinned: bool) -> Check:
    from contracts.provenance_event import event_from_bytes
    from provenance import merkle
    from provenance.checkpoint import NoteVerifier, open_checkpoint

    if raw is None:
        return Check("ledger", "FAILED", f"{PROOF} is missing")
    try:
        doc = json.loads(raw)
        body = base64.b64decode(doc["event"])
        event = event_from_bytes(body)
    except (ValueError, KeyError, ValidationError):
        return Check("ledger", "FAILED", f"{PROOF} does not hold a ledger event")
    ex = event.exchange
    if event.type != "exchange.transfer" or ex is None or ex.transfer_id != record.transfer_id:
        return Check("ledger", "FAILED", "the ledger event is not this transfer's")
    if ex.record_sha256 != hashlib.sha256(record.canonical_bytes()).hexdigest() or \
            ex.payload_sha256 != record.payload_sha256:
        return Check("ledger", "FAILED", "the ledger recorded another record or payload digest")
    if doc.get("proof") is None or not doc.get("checkpoint"):
        return Check("ledger", "FAILED", "no inclusion proof yet (no checkpoint covered the event when written)")
    if not vkey:
        return Check("ledger", "FAILED", "no checkpoint key to check the checkpoint with (--checkpoint-key)")
    try:
        cp = open_checkpoint(doc["checkpoint"], [NoteVerifier.from_vkey(vkey)], record.ledger_origin)
        proof = [base64.b64decode(h) for h in doc["proof"]]
        merkle.verify_inclusion(merkle.leaf_hash(body), int(doc["seq"]), cp.size, proof, cp.root)
    except Exception as exc:  # noqa: BLE001 - CheckpointError, ProofError, bad base64: say which
        return Check("ledger", "FAILED", f"inclusion does not verify: {type(exc).__name__}: {exc}")
    return Check("ledger", "ok", f"event seq {doc['seq']} included in the checkpoint of size {cp.size} "
                                 f"({'pinned key' if pinned else 'key from ' + KEYS})")


def _decrypt_check(payload: Path, private_key: Any, record: TransferRecord) -> Check:
    """With the agency's private key: every segment opens, in order, and the records are counted."""
    try:
        _head, segments = open_sealed(payload, private_key)
        n = 0
        prev: bytes | None = None
        for seg in segments:  # the final (flagged) segment is the trailer; the others hold JSON lines
            if prev is not None:
                n += prev.count(b"\n")
            prev = seg
        trailer = json.loads(prev or b"{}")
    except ExchangeError as exc:
        return Check("decryption", "FAILED", exc.message)
    if trailer.get("records") != n:
        return Check("decryption", "FAILED", f"{n} records, the payload's trailer says {trailer.get('records')}")
    return Check("decryption", "ok", f"{n} records open with the agency's key")


def load_key_file(path: Path, curve: str, *, private: bool) -> Any:
    try:
        jwk = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ExchangeInputError(f"{path}: not a JWK file ({type(exc).__name__})") from None
    return load_private_jwk(jwk, curve, str(path)) if private else load_public_jwk(jwk, curve, str(path))


__all__ = ["Check", "VerifyResult", "load_key_file", "verify_transfer"]
