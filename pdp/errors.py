"""Exceptions of the decision point. Each carries the facts a caller needs, never a token or PII."""

from __future__ import annotations


class PdpError(Exception):
    """Base of every pdp error. ``exit_code`` follows the README's exit codes (1 input, 2 refused, 3 integrity)."""

    exit_code = 1


class ConfigurationError(PdpError):
    """The PDP is mis-configured (missing key, unreadable JWKS, bad calendar)."""


class TokenError(PdpError):
    """A JWT was refused. ``reason`` is a short machine-readable code (expired, bad_signature, …)."""

    exit_code = 2

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"token refused: {reason}" + (f" ({detail})" if detail else ""))


class SubjectTokenError(TokenError):
    """The end user's token (from the IdP) was refused."""


class CallerTokenError(TokenError):
    """The calling system's (PEP's) bearer token was refused."""


class DecisionTokenError(TokenError):
    """A decision token was refused (expired, forged, for another record or purpose)."""


class EngineError(PdpError):
    """The policy engine failed to evaluate; the decision is deny with reason ``engine_error``."""

    exit_code = 2


class EngineTimeout(EngineError):
    """Evaluation exceeded its budget; the decision is deny."""


class NoPolicy(EngineError):
    """No policy is loaded; the decision is deny with reason ``no_policy``."""


class DecisionLogError(PdpError):
    """The decision could not be logged; the decision becomes deny."""

    exit_code = 2


class StoreUnavailable(PdpError):
    """A store of the decision point (decision log, signal history) could not be read or written.

    Drivers raise it for any database error, so the write-behind loops retry and report it without
    knowing the driver; the message names the error type and text, never a connection string.
    """

    exit_code = 2


class SchemaVersionError(PdpError):
    """A store's schema is newer than this ztcp knows: it refuses to open rather than guess."""

    exit_code = 3


class SignalHistoryUnavailable(PdpError):
    """The signal history cannot vouch for a subject's signals (its view may be stale and the
    shared store does not answer); the decision is deny with reason ``signal_history_unavailable``."""

    exit_code = 2
