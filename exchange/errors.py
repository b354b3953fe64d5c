"""The exchange's errors: each carries the exit code the CLI maps it to (cli/errors.py) and a message
that names a line, a field or a transfer — never a national ID or a value."""

from __future__ import annotations


class ExchangeError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ExchangeInputError(ExchangeError):
    """Bad input: a malformed line, an unknown field, a key that is not a key (exit 1; nothing sent)."""

    exit_code = 1


class ExchangeRefused(ExchangeError):
    """Refused: an unknown, suspended or expired agreement, a policy deny, a receipt refused, the TSA
    unreachable under the ``refuse`` setting (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])


class ExchangeIntegrityError(ExchangeError):
    """Something does not verify: a digest, a signature, a time-stamp, an inclusion proof (exit 3)."""

    exit_code = 3
