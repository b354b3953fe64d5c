"""`ztcp witness …`: run a witness that cosigns the ledger's checkpoints only when they extend the last
one it cosigned (C2SP tlog-witness), from a home of its own."""

from __future__ import annotations

import os
from pathlib import Path

import click

from server.settings import load_settings
from server.witness_home import init_home, open_witness, trust_log, verifier_key

home_option = click.option("--home", "home", type=click.Path(file_okay=False, path_type=Path),
                           default=lambda: os.environ.get("ZTCP_WITNESS_HOME"), required=True,
                           help="the witness's own home (default: $ZTCP_WITNESS_HOME), never the ledger's")


@click.group("witness")
def command() -> None:
    """A witness for another ztcp's ledger: init, trust a log, print its key, serve."""


@command.command("init")
@home_option
@click.option("--name", required=True, help="the witness's name in its cosignatures (no spaces)")
def init_cmd(home: Path, name: str) -> None:
    """Create the witness home and its signing key; prints the key the ledger's side configures."""
    ledger_home = Path(os.environ["ZTCP_HOME"]) if os.environ.get("ZTCP_HOME") else None
    click.echo(init_home(home, name, ledger_home))


@command.command("trust")
@home_option
@click.option("--origin", required=True, help="the log's origin (first line of its checkpoints)")
@click.option("--log-key", required=True, help="the log's checkpoint verifier key (ztcp audit checkpoint --json)")
def trust_cmd(home: Path, origin: str, log_key: str) -> None:
    """Cosign checkpoints of this log (only ones signed by this key)."""
    trust_log(home, origin, log_key)
    click.echo(f"trusting {origin}")


@command.command("key")
@home_option
def key_cmd(home: Path) -> None:
    """Print the witness's cosignature verifier key (for ZTCP_WITNESSES and audit verify --witness-key)."""
    click.echo(verifier_key(home))


@command.command("serve")
@home_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
def serve_cmd(home: Path, host: str, port: int) -> None:
    """Serve POST /add-checkpoint until stopped."""
    import uvicorn

    from provenance.witness import create_witness_app

    load_settings()  # the same configuration rules (and one-line errors) as every command
    witness = open_witness(home)
    click.echo(f"witness {witness.signer.name} serving on http://{host}:{port}/add-checkpoint")
    try:
        uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="warning", access_log=False)
    finally:
        witness.close()
