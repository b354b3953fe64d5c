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

    def __call__(self) -> None:
        from server.log_integrity import sign_heads

        try:
            self.signed = sign_heads(self.settings)
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - upkeep must never stop the scheduler; visible here and in the log
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("signing log heads failed: %s", self.last_error)
