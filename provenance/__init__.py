"""Provenance: lineage events, the tamper-evident ledger, proofs, checkpoints, trace and exports."""

from provenance import merkle
from provenance.bank_account_ref import bank_account_ref
from provenance.checkpoint import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint
from provenance.citizen_ref import citizen_ref, national_id_check_digit, normalise_national_id
from provenance.errors import (
    CheckpointError,
    CheckpointUnavailable,
    IntegrityError,
    InvalidBankAccount,
    InvalidNationalId,
    LedgerUnavailable,
    ProofError,
    ProvenanceError,
    UnknownEntry,
)
from provenance.events import Actor, ProvenanceEvent, Purpose, Recipient, Via, canonical_bytes
from provenance.ledger import Ledger, Receipt, SignedCheckpoint, StoredEntry
from provenance.publish import NotePublisher, PublishConflict, published_notes
from provenance.recorder import Recorder
from provenance.trace import Trace, TracedEvent, trace_citizen
from provenance.verify import VerifyReport, verify_ledger

__all__ = [
    "Actor",
    "Checkpoint",
    "CheckpointError",
    "CheckpointUnavailable",
    "IntegrityError",
    "InvalidBankAccount",
    "InvalidNationalId",
    "Ledger",
    "NotePublisher",
    "LedgerUnavailable",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "ProvenanceError",
    "PublishConflict",
    "ProvenanceEvent",
    "Purpose",
    "Receipt",
    "Recipient",
    "Recorder",
    "SignedCheckpoint",
    "StoredEntry",
    "Trace",
    "TracedEvent",
    "UnknownEntry",
    "Via",
    "VerifyReport",
    "bank_account_ref",
    "canonical_bytes",
    "citizen_ref",
    "merkle",
    "national_id_check_digit",
    "normalise_national_id",
    "open_checkpoint",
    "published_notes",
    "trace_citizen",
    "verify_ledger",
]
