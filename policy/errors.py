"""Exceptions of the policy lifecycle. Messages name files and revisions, never policy inputs."""

from __future__ import annotations


class PolicyError(Exception):
    """Base of every policy error; ``exit_code`` follows the README's exit codes (1 input, 2 refused, 3 integrity)."""

    exit_code = 1


class PackError(PolicyError):
    """A policy pack directory cannot be loaded (missing, unreadable, bad data file)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message if not self.problems else message + ":\n" + "\n".join(self.problems))


class ValidationFailed(PolicyError):
    """A pack has problems (parse, compile, schema); ``problems`` are ``file:line:col: message`` lines."""

    def __init__(self, problems: list[str], what: str = "policy pack") -> None:
        self.problems = list(problems)
        super().__init__(f"{what} has {len(self.problems)} problem(s):\n" + "\n".join(self.problems))


class RevisionNotFound(PolicyError):
    """No revision matches the given reference."""


class StoreIntegrityError(PolicyError):
    """The revision store's content does not match its own digests (tampered or corrupted)."""

    exit_code = 3


class LifecycleRefused(PolicyError):
    """A lifecycle action is not allowed (self-approval, unapproved publish, …); recorded as refused."""

    exit_code = 2

    def __init__(self, message: str, *, reason: str, revision: str | None = None) -> None:
        self.reason = reason
        self.revision = revision
        super().__init__(message)


class BundleRejected(PolicyError):
    """A bundle failed verification; it must never be activated.

    ``reason`` is a stable code (``not_an_archive``, ``unsigned``, ``bad_signature``, ``unknown_key``,
    ``digest_mismatch``, ``unsigned_file``, ``missing_file``, ``malformed``, ``pack_digest_mismatch``,
    ``unsafe_path``, ``too_large``); ``file`` names the bundle member at fault when there is one.
    """

    exit_code = 3

    def __init__(self, reason: str, message: str, file: str | None = None) -> None:
        self.reason = reason
        self.file = file
        super().__init__(f"bundle rejected ({reason}): {message}")


class SimulationError(PolicyError):
    """Simulation could not run (no evaluator, no usable log entries)."""
