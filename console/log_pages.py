"""Log management (read-only): retention (last run, what was pruned, the settings), legal holds,
delivery health (backlog per channel) and the ledger's archives. Changes stay in ``ztcp logs``.

The figures come from the runtime (``runtime.logs_status()``, composed in ``server.log_status``);
the page is the SOC's, so it asks the PDP for the alerts dataset like the alert pages do."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from console import guard
from console.web import Console


def add_routes(router: APIRouter, console: Console) -> None:
    @router.get("/logs")
    def logs(request: Request) -> Response:
        ctx = console.ctx(request)
        console.require(ctx, guard.ALERTS)
        status = console.runtime.logs_status()
        retention = status["retention"]
        last = retention.get("last_run") or {}
        return console.render(ctx, "logs.html.j2", retention=retention, last=last,
                              stores=last.get("stores", []), days=retention["days"], holds=status["holds"],
                              holds_error=status["holds_error"], delivery=status["delivery"],
                              archives=status["archives"])
