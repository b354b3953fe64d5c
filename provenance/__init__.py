"""Provenance: lineage events, the tamper-evident ledger, proofs, checkpoints, trace and exports."""

from provenance import merkle
from provenance.checkpoint import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint
from provenance.errors import (
    CheckpointError,
    CheckpointUnavailable,
    IntegrityError,
    LedgerUnavailable,
    ProofError,
    ProvenanceError,
    UnknownEntry,
)
from provenance.ledger import Ledger, Receipt, SignedCheckpoint, StoredEntry
from provenance.publish import NotePublisher, PublishConflict, published_notes
from provenance.recorder import Recorder
from provenance.trace import Trace, TracedEvent, trace_citizen
from provenance.verify import VerifyReport, verify_ledger

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointUnavailable",
    "IntegrityError",
    "Ledger",
    "NotePublisher",
    "LedgerUnavailable",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "ProvenanceError",
    "PublishConflict",
    "Receipt",
    "Recorder",
    "SignedCheckpoint",
    "StoredEntry",
    "Trace",
    "TracedEvent",
    "UnknownEntry",
    "VerifyReport",
    "merkle",
    "open_checkpoint",
    "published_notes",
    "trace_citizen",
    "verify_ledger",
]
