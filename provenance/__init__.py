"""Provenance: lineage events, the tamper-evident ledger and its storage drivers, proofs, checkpoints,
trace and exports."""

from provenance import merkle
from provenance.checkpoint import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint
from provenance.errors import (
    CheckpointError,
    CheckpointUnavailable,
    IntegrityError,
    LedgerUnavailable,
    ProofError,
    ProvenanceError,
    SchemaVersionError,
    UnknownEntry,
)
from provenance.ledger import Ledger, Receipt, SignedCheckpoint, StoredEntry
from provenance.publish import NotePublisher, PublishConflict, published_notes
from provenance.recorder import Recorder
from provenance.sqlite_store import SqliteLedgerStore
from provenance.store import LedgerStore
from provenance.trace import Trace, TracedEvent, trace_citizen
from provenance.verify import VerifyReport, check_unsigned_tail, verify_ledger

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointUnavailable",
    "IntegrityError",
    "Ledger",
    "LedgerStore",
    "NotePublisher",
    "LedgerUnavailable",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "ProvenanceError",
    "PublishConflict",
    "Receipt",
    "Recorder",
    "SchemaVersionError",
    "SignedCheckpoint",
    "SqliteLedgerStore",
    "StoredEntry",
    "Trace",
    "TracedEvent",
    "UnknownEntry",
    "VerifyReport",
    "merkle",
    "open_checkpoint",
    "published_notes",
    "trace_citizen",
    "check_unsigned_tail",
    "verify_ledger",
]
