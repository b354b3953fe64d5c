"""`ztcp serve`: every service on one process with embedded defaults."""

from __future__ import annotations

import click

from server.serve import serve
from server.settings import load_settings


@click.command("serve")
@click.option("--host", default=None, help="bind address (default 127.0.0.1, or ZTCP_HOST)")
@click.option("--port", default=None, type=int, help="port (default 8080, or ZTCP_PORT)")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--siem-interval", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="seconds between SIEM rule-pack runs over new events")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="worker processes on the one port (more than 1 needs ZTCP_DATABASE_URL)")
def command(host: str | None, port: int | None, log_level: str, siem_interval: float, workers: int) -> int:
    """Run the PDP, provenance, key management, SIEM and console in one process (or N workers)."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    return serve(load_settings(**overrides), log_level=log_level, siem_interval=siem_interval, say=click.echo,
                 workers=workers)
