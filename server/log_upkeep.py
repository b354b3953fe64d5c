"""Log upkeep after each SIEM run, on the cluster's leader: sign every chained log's head (so a
truncated tail is detectable), and apply retention when it is due (:mod:`server.retention`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from server.settings import Settings

log = logging.getLogger("ztcp.server.log_upkeep")


class LogUpkeep:
    def __init__(self, settings: Settings, clock: Any = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.last_error: str | None = None
        self.signed: dict[str, int] = {}
        self.last_retention: float | None = None

    def __call__(self) -> None:
        from server.log_integrity import sign_heads

        try:
            self.signed = sign_heads(self.settings)
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - upkeep must never stop the scheduler; visible here and in the log
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("signing log heads failed: %s", self.last_error)
        self.retention_if_due()

    def retention_if_due(self) -> None:
        from server.retention import run_retention

        now = self.clock()
        interval = self.settings.retention_interval_hours * 3600
        if self.last_retention is not None and now - self.last_retention < interval:
            return
        self.last_retention = now
        try:
            report = run_retention(self.settings, apply=True, now=now)
            deleted = {s.store: s.deleted for s in report.stores if s.deleted}
            if deleted:
                log.info("retention deleted %s", deleted)
        except Exception as exc:  # noqa: BLE001 - e.g. holds unreadable: nothing deleted, retried next interval
            log.warning("retention not applied: %s", exc)
