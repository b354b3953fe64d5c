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
