"""The provenance exception hierarchy. Messages carry facts an operator can act on, never raw values."""

from __future__ import annotations


class ProvenanceError(Exception):
    """Base of every provenance failure. ``exit_code``: the README's exit codes (1 input, 2 refused, 3 integrity)."""

    exit_code = 1


class LedgerUnavailable(ProvenanceError):
    """The ledger cannot durably record right now; callers must fail closed (return no plaintext)."""

    exit_code = 2


class SchemaVersionError(LedgerUnavailable):
    """A ledger store whose layout this ztcp cannot use (written by a newer ztcp, or unrecognisable).

    Refused rather than opened: running this version's schema statements over an unknown layout
    could damage it. A subclass of ``LedgerUnavailable``, so every fail-closed path treats it as one.
    """


class UnknownEntry(ProvenanceError):
    """A sequence number, tree size or checkpoint that the ledger does not have."""


class IntegrityError(ProvenanceError):
    """The stored ledger does not match what was signed: names the first bad seq and what is wrong."""

    exit_code = 3

    def __init__(self, message: str, *, seq: int | None = None, kind: str = "changed") -> None:
        super().__init__(message)
        self.seq = seq
        self.kind = kind


class CheckpointError(ProvenanceError):
    """A checkpoint that cannot be parsed or whose signature does not verify."""

    exit_code = 3


class CheckpointUnavailable(ProvenanceError):
    """The checkpoint key cannot sign right now (e.g. the key server is down). Appends go on; the
    next checkpoint covers the events recorded meanwhile."""

    exit_code = 2


class ProofError(ProvenanceError):
    """A Merkle inclusion or consistency proof that does not verify."""

    exit_code = 3


class ProofSizeError(ProofError):
    """Wrong number of proof hashes, or a hash of the wrong length."""


class ProofRangeError(ProofError):
    """An index or tree size out of range (index >= size, size2 < size1, ...)."""


class RootMismatch(ProofError):
    """The proof computes a root different from the one claimed."""
