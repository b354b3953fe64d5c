"""One view of log management for ``/readyz`` and the console's ``/console/logs``: retention (last run,
what was pruned, holds), delivery health (backlog per channel), ledger archives."""

from __future__ import annotations

from typing import Any

from server.errors import ServerError
from server.settings import Settings


def archive_status(settings: Settings) -> dict[str, Any]:
    from provenance.archive import read_header, segments
    from server.archives import archive_dir

    segs = segments(archive_dir(settings))
    if not segs:
        return {"segments": 0, "end": 0, "last_segment": None, "error": None}
    try:
        last = read_header(segs[-1])
    except Exception:  # noqa: BLE001 - a page must show the rest when one header is unreadable
        return {"segments": len(segs), "end": None, "last_segment": segs[-1].name,
                "error": f"{segs[-1].name} unreadable (run ztcp logs verify)"}
    return {"segments": len(segs), "end": last.end, "last_segment": segs[-1].name, "error": None}


def logs_status(settings: Settings, delivery_thread: Any = None) -> dict[str, Any]:
    from server.delivery import delivery_status
    from server.holds import hold_store
    from server.retention import retention_status

    try:
        holds = [h.as_dict() for h in hold_store(settings).list()]
        holds_error = None
    except ServerError as exc:
        holds, holds_error = [], str(exc)
    try:
        delivery = delivery_status(settings, delivery_thread)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad delivery setting: shown, not fatal to the page
        delivery = {"ok": False, "channels": {}, "error": type(exc).__name__}
    return {"retention": retention_status(settings), "holds": holds, "holds_error": holds_error,
            "delivery": delivery, "archives": archive_status(settings)}
