"""One mapping from what went wrong to the line the user sees and the exit code (README):
0 ok, 1 usage or input error, 2 denied/refused, 3 integrity failure.

Every ``ztcp`` command runs under :func:`run` (through the group's ``main``), so a command never
maps errors itself: it raises the package's exception, which carries ``exit_code``, or a
:class:`CliFailure` for a message phrased here. click's own usage errors (a missing option, an
unknown command) are input errors too: exit 1, never 2, which the README reserves for "refused".
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_DENIED = 2
EXIT_INTEGRITY = 3


class CliFailure(click.ClickException):
    """A failure already phrased for the user, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a per-class code; ours is per failure

    def show(self, file: Any = None) -> None:
        click.echo(f"ztcp: error: {self.format_message()}", err=True)


def _package_errors() -> tuple[type[BaseException], ...]:
    """The base exception of every package: each carries ``exit_code`` and a message without values."""
    import contracts
    import exchange
    import keymgmt
    import pdp
    import policy
    import provenance
    import siem_rules
    from server.errors import ServerError

    return (contracts.ContractError, pdp.PdpError, policy.PolicyError, provenance.ProvenanceError,
            keymgmt.KeyMgmtError, siem_rules.SiemError, exchange.ExchangeError, ServerError)


def _exit(message: str, code: int) -> NoReturn:
    click.echo(f"ztcp: error: {message}", err=True)
    sys.exit(code)


def run(invoke: Callable[[], Any]) -> NoReturn:
    """Run ``invoke`` (click's non-standalone main) and exit with the documented code."""
    try:
        rv = invoke()
    except click.UsageError as exc:  # bad option, missing argument, unknown command
        exc.show()
        sys.exit(EXIT_INPUT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_INPUT)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        _exit(f"{exc.strerror}: {exc.filename}", EXIT_INPUT)
    except Exception as exc:
        if isinstance(exc, _package_errors()):
            _exit(str(exc), getattr(exc, "exit_code", EXIT_INPUT))
        raise
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def fail(message: str, exit_code: int = EXIT_INPUT) -> NoReturn:
    raise CliFailure(message, exit_code)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
