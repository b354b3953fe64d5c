"""`ztcp serve`: every service in one process, with embedded defaults, until SIGTERM or SIGINT."""

from __future__ import annotations

import errno
import gc
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypedDict

from server.errors import ConfigError
from server.settings import Settings

if TYPE_CHECKING:
    from server.tls import TlsOptions

# uvloop's event loop and httptools' HTTP/1.1 parser (both C; uvicorn[standard] ships them), named
# rather than left to "auto", which silently falls back to asyncio and h11 (pure Python, several
# times the per-request cost) when either is missing: then the server does not start.


class _ServerOptions(TypedDict):
    loop: Literal["uvloop"]
    http: Literal["httptools"]


SERVER_OPTIONS: _ServerOptions = {"loop": "uvloop", "http": "httptools"}


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or one line naming them (exit 1) if it cannot be.

    Bound before anything is built or printed, and handed to uvicorn as is: a busy port is said
    at once, and nothing can take the port between the check and the serving.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = ("address already in use (another ztcp serve?)" if exc.errno == errno.EADDRINUSE
               else (exc.strerror or type(exc).__name__).lower())
        raise ConfigError(f"cannot listen on {host}:{port}: {why}; use --port or ZTCP_PORT") from None
    return sock


FULL_GC_EVERY = 100  # middle-generation passes per full pass (CPython's default: 10)


def serve(settings: Settings, *, log_level: str = "info", siem_interval: float = 60.0,
          say: Callable[[str], None] = print, workers: int = 1, clock: Callable[[], float] = time.time) -> int:
    """Bind the port, build the runtime and the app, print where they listen, serve, then drain and flush.

    ``workers`` > 1: that many processes on the one socket under a supervisor (server/workers.py),
    each a replica on ``ZTCP_DATABASE_URL``. Returns the exit code (a supervisor's workers may fail).
    ``clock``: the runtime's (not settable from the command line; a benchmark decides on a weekday)."""
    from server.tls import tls_options

    tls = tls_options(settings)  # before anything is created: bad TLS files stop here
    if not settings.idp_issuer and not settings.loopback and settings.dev_signin is not True:
        raise ConfigError(
            f"refusing to serve on {settings.host} without an identity provider: development sign-in would let "
            "anyone who reaches it act as any staff member. Set ZTCP_IDP_ISSUER (and ZTCP_IDP_AUDIENCE), or "
            "ZTCP_DEV_SIGNIN=true for a non-production demo")
    if workers > 1 and not settings.database_url:
        raise ConfigError(f"--workers {workers} needs ZTCP_DATABASE_URL (PostgreSQL): the embedded SQLite stores "
                          "belong to one process; use --workers 1 or set ZTCP_DATABASE_URL")
    sock = listen_socket(settings.host, settings.port)  # and a busy port, before "serving on" is said
    try:
        if workers <= 1:
            _serve(settings, sock, tls, log_level, siem_interval, say, clock)
            return 0
        from server.database import check_database
        from server.workers import Supervisor

        check_database(settings)  # once, in the supervisor: unreachable is one line, not N
        sock.listen(2048)  # before the first fork: connections queue while the workers start
        return Supervisor(workers, lambda talk: _serve(settings, sock, tls, log_level, siem_interval, talk, clock),
                          say).run()
    finally:
        sock.close()


def _serve(settings: Settings, sock: socket.socket, tls: TlsOptions, log_level: str, siem_interval: float,
           say: Callable[[str], None], clock: Callable[[], float] = time.time) -> None:
    import uvicorn

    from server.app import create_app
    from server.database import check_database
    from server.delivery import make_delivery_thread
    from server.leader import lease_for
    from server.runtime import Runtime
    from server.siem import make_scheduler

    check_database(settings)  # unreachable: one line naming it (never its password), before anything else
    runtime = Runtime(settings, clock=clock)
    runtime.keys  # noqa: B018 - opens the keyring (the cluster's with ZTCP_DATABASE_URL): a wrong master key stops here
    runtime.point  # noqa: B018 - build first: it creates the stores (decisions.db…) the SIEM's sources open
    # With replicas, the timed jobs (SIEM tick, alert delivery, exchange sweep) run on the holder of
    # the cluster's leader lease only; alone, this process always holds it (server/leader.py).
    lease = runtime.lease = lease_for(settings).start()
    # Alerts out to the SOC (syslog), email and webhooks: its own thread, woken after each SIEM run.
    delivery = make_delivery_thread(settings, gate=lease.held)
    siem = make_scheduler(settings, interval=siem_interval,  # the rule pack over new events, every minute
                          after_run=delivery.wake if delivery is not None else None, gate=lease.held)
    app = create_app(runtime, siem, delivery)
    base = f"{settings.scheme}://{settings.host}:{settings.port}"
    active = runtime.point.active
    mtls = " (mutual TLS: client certificates required)" if settings.tls_client_ca_file else ""
    say(f"ztcp serving on {base}{mtls}  (home {runtime.home}, policy {active.revision if active else 'none'})")
    say(f"Console: {base}/console/   readiness: {base}/readyz")
    if settings.dev_signin_enabled:
        say("Try it:\n"
            "  CALLER=$(ztcp token issue --client counter-app --scope pdp:decide)\n"
            "  SUBJECT=$(ztcp token issue --sub emp-0042 --role case_officer --method fido2 --mfa)\n"
            "  sed \"s/SUBJECT_TOKEN/$SUBJECT/\" examples/decision-request.json | \\\n"
            f"    curl -s {base}/v1/decisions -H \"Authorization: Bearer $CALLER\" "
            "-H 'content-type: application/json' -d @-")
    # uvicorn drains requests on SIGTERM/SIGINT and then re-raises the signal under the handler that
    # was installed before it started; a no-op handler here lets us flush the logs and exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # The client IP feeds risk signals and provenance. uvicorn's proxy handling is off: the gateway's
    # ContextResolver reads X-Forwarded-For itself, only from ZTCP_TRUSTED_PROXIES (CIDR ranges too),
    # and needs the real peer to decide whether to believe it.
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                                           access_log=False, timeout_graceful_shutdown=10, proxy_headers=False,
                                           **SERVER_OPTIONS, **tls))
    siem.start()
    from server.exchange import Sweeper

    sweeper = Sweeper(runtime.exchange, gate=lease.held).start()  # overdue receipts recorded, late time-stamps retried
    if delivery is not None:
        delivery.start()
    # Everything built so far lives for the whole process: keep it out of the cyclic GC's scans,
    # whose full passes over a large heap otherwise show up as tail latency.
    gc.freeze()
    # What the decision path keeps (signal windows, caches) grows the heap a full pass must walk:
    # measured at 8 connections, CPython's default started one every ~2 s, 7 → 147 ms each as the
    # heap grew, and they alone took p99 from 11 to 13–41 ms. Full passes stay (a cycle is still
    # freed) but come after 100 middle-generation passes instead of 10.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)
    try:
        server.run(sockets=[sock])
    finally:
        siem.stop()
        sweeper.stop()
        if delivery is not None:
            delivery.stop()
        lease.stop()  # a standby takes the jobs over on its next try
        runtime.close()  # after uvicorn drained in-flight requests: flush decision log and history
        say("ztcp stopped; logs flushed")
