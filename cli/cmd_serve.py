"""`ztcp serve`: every service on one process with embedded defaults."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

import click

from cli.errors import CliFailure, handle_errors
from cli.settings import Settings, load_settings


@click.command("serve")
@click.option("--host", default=None, help="bind address (default 127.0.0.1, or ZTCP_HOST)")
@click.option("--port", default=None, type=int, help="port (default 8080, or ZTCP_PORT)")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--siem-interval", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="seconds between SIEM rule-pack runs over new events")
@handle_errors
def command(host: str | None, port: int | None, log_level: str, siem_interval: float) -> None:
    """Run the PDP, provenance, key management, SIEM and console in one process."""
    import uvicorn

    from cli.app import create_app
    from cli.runtime import Runtime

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = load_settings(**overrides)
    tls = _tls_options(settings)  # before anything is created: bad TLS files stop here
    from cli.cmd_siem import make_scheduler

    runtime = Runtime(settings)
    runtime.point  # noqa: B018 - build first: it creates the stores (decisions.db…) the SIEM's sources open
    siem = make_scheduler(settings, interval=siem_interval)  # the rule pack over new events, every minute
    app = create_app(runtime, siem)
    base = f"{settings.scheme}://{settings.host}:{settings.port}"
    active = runtime.point.active
    mtls = " (mutual TLS: client certificates required)" if settings.tls_client_ca_file else ""
    click.echo(f"ztcp serving on {base}{mtls}  (home {runtime.home}, policy {active.revision if active else 'none'})")
    click.echo(f"Console: {base}/console/   readiness: {base}/readyz")
    if runtime.issuer is not None:
        click.echo("Try it:\n"
                   "  CALLER=$(ztcp token issue --client counter-app --scope pdp:decide)\n"
                   "  SUBJECT=$(ztcp token issue --sub emp-0042 --role case_officer --method fido2 --mfa)\n"
                   "  sed \"s/SUBJECT_TOKEN/$SUBJECT/\" examples/decision-request.json | \\\n"
                   f"    curl -s {base}/v1/decisions -H \"Authorization: Bearer $CALLER\" "
                   "-H 'content-type: application/json' -d @-")
    # uvicorn drains requests on SIGTERM/SIGINT and then re-raises the signal under the handler that
    # was installed before it started; a no-op handler here lets us flush the logs and exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # The client IP feeds risk signals and provenance: believe X-Forwarded-For only from configured proxies.
    proxies = ",".join(settings.trusted_proxies)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                                           access_log=False, timeout_graceful_shutdown=10,
                                           proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
                                           **tls))
    siem.start()
    # Everything built so far lives for the whole process: keep it out of the cyclic GC's scans,
    # whose full passes over a large heap otherwise show up as tail latency.
    gc.freeze()
    try:
        server.run()
    finally:
        siem.stop()
        runtime.close()  # after uvicorn drained in-flight requests: flush decision log and history
        click.echo("ztcp stopped; logs flushed")


def _tls_options(settings: Settings) -> dict:
    """uvicorn's TLS options from the settings, after checking the files (a clear error, not a
    traceback from the ssl module; a private key others can read is refused)."""
    if not settings.tls_cert_file:
        return {}
    import ssl

    files = {"ZTCP_TLS_CERT_FILE": settings.tls_cert_file, "ZTCP_TLS_KEY_FILE": settings.tls_key_file,
             "ZTCP_TLS_CLIENT_CA_FILE": settings.tls_client_ca_file}
    for name, path in files.items():
        if path is not None and not Path(path).is_file():
            raise CliFailure(f"{name}: no such file: {path}")
    key = Path(settings.tls_key_file)  # type: ignore[arg-type]
    if key.stat().st_mode & 0o077:
        raise CliFailure(f"ZTCP_TLS_KEY_FILE: {key} is readable by others; chmod 600 it")
    try:  # load once here so a wrong key or a bad PEM is one line, before anything starts
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(settings.tls_cert_file), str(key))
        if settings.tls_client_ca_file:
            ctx.load_verify_locations(str(settings.tls_client_ca_file))
    except (ssl.SSLError, ValueError) as exc:
        raise CliFailure(f"TLS files cannot be used: {exc}") from None
    opts: dict = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(key)}
    if settings.tls_client_ca_file:
        opts |= {"ssl_ca_certs": str(settings.tls_client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return opts
