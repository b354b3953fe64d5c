"""Hot reload: follow the revision store, activate only verified bundles, never drop a request.

A poller asks the store for its slot state (one cheap query) every interval. When the active or
shadow revision changes it fetches the signed bundle, verifies it (signature, per-file hashes,
scope: ``write`` for active, ``shadow`` for report-only), compiles it, and swaps it in with one
reference assignment — requests already evaluating finish on the old engine. A bundle that fails
verification or compilation is refused and the last good revision keeps serving; the refusal is
kept in ``last_error`` for ``/readyz`` and logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.errors import PdpError
from pdp.point import ActivePolicy, DecisionPoint
from policy import PolicyError, PolicyPack, RevisionStore, verify_bundle

log = logging.getLogger("ztcp.pdp.reload")

BuildActive = Callable[[PolicyPack, str], ActivePolicy]


class PolicyReloader:
    def __init__(self, store: RevisionStore, public_keys: Callable[[], list[Ed25519PublicKey]], build: BuildActive,
                 point: DecisionPoint, *, interval: float = 1.0, watch_files: list[Path] | None = None) -> None:
        self.store = store
        self._public_keys = public_keys
        self._build = build
        self.point = point
        self.interval = interval
        self.last_error: str | None = None
        self._seen: tuple[object, ...] | None = None
        self._watch = watch_files or []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stamp(self) -> tuple[object, ...]:
        state = self.store.state()
        files = tuple((str(p), p.stat().st_mtime_ns if p.exists() else 0) for p in self._watch)
        return (state.active, state.active_digest, state.shadow, state.shadow_digest, state.generation, files)

    def _load(self, slot: str) -> ActivePolicy | None:
        published = self.store.active() if slot == "active" else self.store.shadow()
        if published is None:
            return None
        scope = "write" if slot == "active" else "shadow"
        pack = verify_bundle(published.bundle, self._public_keys(), scope=scope)
        return self._build(pack, published.revision)

    def check(self) -> bool:
        """Reload if anything changed. True when a new policy was activated."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        try:
            active = self._load("active")
            shadow = self._load("shadow")
        except (PolicyError, PdpError) as exc:
            # Keep serving the last good revision; remember the stamp so we do not retry in a loop.
            self.last_error = f"refused revision {stamp[0]}: {exc}"
            log.error("policy reload %s", self.last_error)
            self._seen = stamp
            return False
        if active is None and self.point.active is not None:
            self.last_error = "store has no active revision; keeping the current one"
            self._seen = stamp
            return False
        self.point.activate(active)
        self.point.set_shadow(shadow)
        self.last_error = None
        self._seen = stamp
        log.info("policy active: %s%s", active.revision if active else None,
                 f" (shadow {shadow.revision})" if shadow else "")
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # the poller must survive a transient store error
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("policy reload check failed: %s", self.last_error)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ztcp-policy-reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
