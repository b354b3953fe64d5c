"""Turning package exceptions into one clear line and an exit code (DESIGN §10).

Exit codes: 0 ok, 1 usage/input error, 2 denied/refused, 3 integrity failure. Package exception
classes carry an ``exit_code`` attribute; anything without one is an input/usage error (1).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_DENIED = 2
EXIT_INTEGRITY = 3

F = TypeVar("F", bound=Callable[..., Any])


class CliFailure(click.ClickException):
    """A failure already phrased for the user, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"ztcp: error: {self.format_message()}", err=True)


def _package_errors() -> tuple[type[BaseException], ...]:
    """The base exception of every package that is importable (packages land independently)."""
    found: list[type[BaseException]] = []
    for module, name in (
        ("pdp", "PdpError"),
        ("policy", "PolicyError"),
        ("provenance", "ProvenanceError"),
        ("keymgmt", "KeyMgmtError"),
        ("siem_rules", "SiemError"),
    ):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def handle_errors(fn: F) -> F:
    """Decorator for commands: package errors become ``ztcp: error: …`` and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except _package_errors() as exc:  # type: ignore[misc]
            raise CliFailure(str(exc), getattr(exc, "exit_code", EXIT_INPUT)) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            raise CliFailure(f"{exc.strerror}: {exc.filename}", EXIT_INPUT) from None

    return wrapper  # type: ignore[return-value]


def fail(message: str, exit_code: int = EXIT_INPUT) -> None:
    raise CliFailure(message, exit_code)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
