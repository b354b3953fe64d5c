"""The `ztcp` command. Each area registers its commands from its own module (cli/cmd_*.py).

Areas are imported only when their command runs, so `ztcp audit trace` does not pay for pySigma or
the key-management stack at start-up.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

import click

from cli.errors import run

# command name → module defining a click command or group named ``command``.
_AREAS = {
    "serve": "cli.cmd_serve",
    "token": "cli.cmd_token",
    "pdp": "cli.cmd_pdp",
    "policy": "cli.cmd_policy",
    "audit": "cli.cmd_audit",
    "keys": "cli.cmd_keys",
    "siem": "cli.cmd_siem",
    "demo": "cli.cmd_demo",
    "backup": "cli.cmd_backup",
    "devices": "cli.cmd_devices",
    "witness": "cli.cmd_witness",
    "exchange": "cli.cmd_exchange",
    "logs": "cli.cmd_logs",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, module in _AREAS.items() if importlib.util.find_spec(module) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _AREAS.get(cmd_name)
        if module is None or importlib.util.find_spec(module) is None:
            return None
        return importlib.import_module(module).command

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Every command's errors go through one mapping (cli/errors.py) to the documented exit codes."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        run(lambda: super(_LazyGroup, self).main(args, prog_name, complete_var, standalone_mode=False, **extra))


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ztcp", prog_name="ztcp")
def ztcp() -> None:
    """ztcp: zero-trust policy decisions, tamper-evident provenance, field encryption, SIEM rules."""


def main() -> None:
    # Everything ztcp writes (stores, their WAL/SHM files, reports, exports) is for its own user
    # only; files holding keys are additionally opened 0600 explicitly.
    os.umask(0o077)
    ztcp(prog_name="ztcp")


if __name__ == "__main__":
    main()
