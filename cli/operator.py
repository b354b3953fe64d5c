"""Who is acting at the command line: an operator identified by a verified token, never by a flag.

The token comes from ``--token`` or ``ZTCP_TOKEN``. Since argv is visible to every local user
(``ps``), ``--token`` also takes ``@FILE`` or ``-`` (standard input); a raw value still works but
is warned about.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from cli.errors import EXIT_DENIED, EXIT_INPUT, CliFailure
from pdp import TokenError
from server.bootstrap import system_keys
from server.identity import token_verifier
from server.operators import decide_operation
from server.settings import Settings


@dataclass(frozen=True)
class Operator:
    id: str
    roles: tuple[str, ...]
    auth_method: str
    mfa: bool
    token: str = field(default="", repr=False)  # the verified token, for the PDP (never printed)


def read_token(value: str | None) -> str | None:
    """Resolve ``--token`` (raw, ``@FILE`` or ``-``) falling back to ``ZTCP_TOKEN``."""
    if value is None:
        env = os.environ.get("ZTCP_TOKEN")
        return env.strip() if env else None
    if value == "-":
        return sys.stdin.readline().strip()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text().strip()
        except OSError as exc:
            raise CliFailure(f"cannot read token file {value[1:]}: {exc.strerror}", EXIT_INPUT) from None
    click.echo("ztcp: warning: a token in argv is visible to other local users; "
               "prefer ZTCP_TOKEN or --token @FILE", err=True)
    return value.strip()


def current_operator(settings: Settings, token: str | None, role: str) -> Operator:
    """Verify the operator's token and require ``role``; exit 2 with a clear message otherwise."""
    raw = read_token(token)
    if not raw:
        raise CliFailure(f"this command needs a token with role {role}: set ZTCP_TOKEN or pass --token",
                         EXIT_DENIED)
    verifier = token_verifier(settings, system_keys(settings))
    try:
        subject = verifier.verify_subject(raw)
    except TokenError as exc:
        raise CliFailure(f"operator token refused: {exc.reason}", EXIT_DENIED) from None
    if role not in subject.roles:
        raise CliFailure(f"operator {subject.id} lacks role {role} (has: {', '.join(subject.roles) or 'none'})",
                         EXIT_DENIED)
    return Operator(id=subject.id, roles=subject.roles, auth_method=subject.auth_method, mfa=subject.mfa, token=raw)


def authorize(settings: Settings, operator: Operator, *, dataset: str, action: str, purpose: str,
              record_id: str | None = None) -> None:
    """The PDP's permit for this operator's action (server.operators), or exit 2 naming its reasons."""
    decision = decide_operation(settings, operator.token, dataset=dataset, action=action, purpose=purpose,
                                record_id=record_id)
    if decision.effect != "permit":
        raise CliFailure(f"refused by policy ({decision.effect}): {', '.join(decision.reasons)}", EXIT_DENIED)

token_option = click.option(
    "--token", "token", default=None, metavar="TOKEN|@FILE|-",
    help="operator token (default: $ZTCP_TOKEN); @FILE or - reads it from a file or stdin",
)
