"""The `ztcp` command. Each area registers its commands from its own module (cli/cmd_*.py)."""

from __future__ import annotations

import importlib

import click

# Modules that define a click command or group named ``command``; added in this order.
_COMMAND_MODULES = (
    "cli.cmd_serve",
    "cli.cmd_token",
    "cli.cmd_pdp",
    "cli.cmd_policy",
    "cli.cmd_audit",
    "cli.cmd_keys",
    "cli.cmd_siem",
    "cli.cmd_demo",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ztcp", prog_name="ztcp")
def ztcp() -> None:
    """ztcp: zero-trust policy decisions, tamper-evident provenance, field encryption, SIEM rules."""


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area has not landed yet
                continue
            raise
        ztcp.add_command(module.command)


_register()


def main() -> None:
    ztcp(prog_name="ztcp")


if __name__ == "__main__":
    main()
