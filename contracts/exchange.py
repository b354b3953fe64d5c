"""Government data exchange: the transfer record ztcp signs, the receipt an agency signs, and the
statement an agency signs over data it sends the bureau (docs/design.md, Contracts; exchange/).

The transfer record is X-Road's message-log idea made stronger: ztcp keeps this record, never the
payload, and the record binds the exact payload bytes (SHA-256), the agreement, the recipient, the
fields, the number of citizens and where the ledger recorded each citizen's disclosure. It is signed
(compact JWS, Ed25519) over its RFC 8785 bytes, and that signature is time-stamped by a TSA
(RFC 3161). Receipts and inbound statements are compact JWS too, signed with the agency's key
registered in its agreement (``bureau/data.json`` of the signed policy revision).

Nothing here names a person: citizens are counted, never listed.
"""

from __future__ import annotations

from typing import Annotated, Literal

import rfc8785
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contracts.screen import screen_text

TRANSFER_VERSION = "ztcp-transfer/1"
TRANSFER_TYPE = "ztcp-transfer+jws"  # JWS typ of the bureau's signature over a transfer record
RECEIPT_TYPE = "ztcp-receipt+jws"  # JWS typ of an agency's receipt
INBOUND_TYPE = "ztcp-inbound+jws"  # JWS typ of an agency's statement over data it sends us

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
TransferId = Annotated[str, StringConstraints(pattern=r"^xfer_[A-Za-z0-9]{1,64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-/]+$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Count = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)


class SeqRange(_Strict):
    """A contiguous run of ledger sequence numbers (inclusive)."""

    first: Count
    last: Count


class PayloadEncryption(_Strict):
    """How the payload is sealed to the agency: HPKE (RFC 9180) wraps a fresh content key to the
    agency's registered X25519 key; the records are AES-256-GCM segments under that key."""

    scheme: Literal["hpke-x25519-aes256gcm-stream/1"] = "hpke-x25519-aes256gcm-stream/1"
    recipient_key: Annotated[str, StringConstraints(min_length=16, max_length=128)]  # RFC 7638 thumbprint


class TransferRecord(_Strict):
    """What ztcp signs and keeps for one outbound transfer (single or batch). Field names are the contract."""

    version: Literal["ztcp-transfer/1"] = "ztcp-transfer/1"  # = TRANSFER_VERSION
    transfer_id: TransferId
    agreement_id: Name
    agency: Name
    dataset: Name
    legal_basis: Name
    purpose: Name
    fields: list[FieldName]
    withheld_fields: list[FieldName] = Field(default_factory=list)
    citizens: Count  # records in the payload, one per citizen
    not_found: Count = 0  # input lines naming no record in the protected database (never listed)
    payload_sha256: Sha256Hex  # of the exact bytes sent (the sealed payload file)
    payload_bytes: Count
    encryption: PayloadEncryption
    receipt_key: Annotated[str, StringConstraints(min_length=16, max_length=128)]  # thumbprint the receipt must match
    decision_ids: list[Name]
    operator: Name
    ledger_seqs: list[SeqRange]  # where each citizen's pii.disclose is in the ledger
    ledger_origin: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    started_at: AwareDatetime
    completed_at: AwareDatetime
    tsa: Literal["required", "later", "none"]  # what the bureau's TSA policy was when this was signed

    def canonical_bytes(self) -> bytes:
        """RFC 8785 bytes: what the signature and the ledger's record_sha256 cover."""
        return rfc8785.dumps(self.model_dump(mode="json"))


class ReceiptClaims(_Strict):
    """The payload of an agency's receipt: "we received exactly these bytes of this transfer"."""

    transfer_id: TransferId
    agreement_id: Name
    agency: Name
    payload_sha256: Sha256Hex
    received_at: AwareDatetime
    citizens: Count | None = None


class InboundClaims(_Strict):
    """The payload an agency signs over data it sends the bureau (``ztcp exchange receive``)."""

    transfer_id: TransferId
    agreement_id: Name
    agency: Name
    payload_sha256: Sha256Hex
    citizens: Count
    sent_at: AwareDatetime


def screened_name(value: str) -> str:
    """Ids that reach the ledger pass the one PII screen (a national ID is refused, never echoed)."""
    return screen_text(value)


def transfer_record_sha256(record: TransferRecord) -> str:
    import hashlib

    return hashlib.sha256(record.canonical_bytes()).hexdigest()


__all__ = [
    "INBOUND_TYPE",
    "RECEIPT_TYPE",
    "TRANSFER_TYPE",
    "TRANSFER_VERSION",
    "InboundClaims",
    "PayloadEncryption",
    "ReceiptClaims",
    "SeqRange",
    "TransferRecord",
    "screened_name",
    "transfer_record_sha256",
]
