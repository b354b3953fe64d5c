"""`/readyz`: the state of every dependency ``ztcp serve`` relies on, one check each.

A check never raises; it answers ``{"ok": bool, ...facts}``. Checks that cross the network (the key
provider may be Vault/OpenBao) are cached for a few seconds so a probing load balancer cannot turn
readiness into load on the key service. The SIEM is reported but not *required*: a failing rule
run must not take decisions and protected reads out of service (its alerts would come late, and
its last error is shown here and in the log). Alert delivery is the same: its backlog and each
channel's last error are shown, and a receiver that is down is "degraded", never "not ready".
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provenance.postgres_store import PostgresLedgerStore
from server.bootstrap import DATA_KEK

if TYPE_CHECKING:
    from server.runtime import Runtime
    from siem_rules import Scheduler
    from siem_rules.delivery import DeliveryThread

CACHE_SECONDS = 5.0
Check = Callable[[], dict[str, Any]]


class Readiness:
    def __init__(self, runtime: Runtime, siem: Scheduler | None = None,
                 delivery: DeliveryThread | None = None) -> None:
        self.runtime = runtime
        self.siem = siem
        self.delivery = delivery
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def report(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        checks: dict[str, dict[str, Any]] = {
            "policy": self._policy(),
            "decision_log": _guard(self._decision_log),
            "signal_history": _guard(self._signal_history),
            "ledger": _guard(self._ledger),
            "keys": self._cached("keys", self._keys),
            "protected_db": self._cached("protected_db", self._protected_db),
            "cluster": self._cluster(),
        }
        point = self.runtime.point
        if point.shadow is not None:
            checks["shadow_policy"] = {"ok": True, "revision": point.shadow.revision}
        ready = all(c["ok"] for c in checks.values())
        if self.siem is not None:
            checks["siem"] = {"ok": self.siem.running and self.siem.last_error is None, "required": False,
                              "runs": self.siem.runs, "error": self.siem.last_error}
        if self.delivery is not None:
            # Like the SIEM: reported, never required. A receiver that is down grows the backlog
            # (kept durably, delivered in order when it is back); decisions go on regardless.
            checks["delivery"] = self._cached("delivery", self._delivery) | {"required": False}
        # Retention: when it last ran, what it deleted, the active holds; reported, never required.
        checks["retention"] = self._cached("retention", self._retention) | {"required": False}
        return ready, checks

    def _retention(self) -> dict[str, Any]:
        from server.retention import retention_status

        status = retention_status(self.runtime.settings)
        last = status["last_run"] or {}
        return {"ok": status["ok"], "last_run": last.get("at"),
                "deleted": {s["store"]: s["deleted"] for s in last.get("stores", []) if s.get("deleted")},
                "holds": status["holds"], "days": status["days"]}

    def _delivery(self) -> dict[str, Any]:
        from server.delivery import delivery_status

        return delivery_status(self.runtime.settings, self.delivery)

    def _cached(self, name: str, check: Check) -> dict[str, Any]:
        with self._lock:
            hit = self._cache.get(name)
            if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
                return hit[1]
        result = _guard(check)
        with self._lock:
            self._cache[name] = (time.monotonic(), result)
        return result

    def _policy(self) -> dict[str, Any]:
        active = self.runtime.point.active
        out = {"ok": active is not None, "revision": active.revision if active else None,
               "digest": active.digest if active else None, "engine": active.engine.kind if active else None}
        if self.runtime.reloader.last_error:
            out["reload_error"] = self.runtime.reloader.last_error
        return out

    def _cluster(self) -> dict[str, Any]:
        """The database every replica shares (or SQLite) and this replica's roles: the ledger's
        integrator and the timed jobs' leader (SIEM, delivery, exchange sweep)."""
        from server.database import probe

        settings = self.runtime.settings
        out = dict(self._cached("database", lambda: probe(settings)))  # a probe at most every 5 s
        lease = getattr(self.runtime, "lease", None)
        roles: dict[str, Any] = {"scheduler": lease.status()["role"] if lease is not None else "none"}
        ledger = self.runtime.__dict__.get("ledger")  # built by then in `ztcp serve`; never built here
        status = getattr(getattr(ledger, "store", None), "integrator_status", None)
        roles["integrator"] = status()["role"] if status is not None else ("leader" if ledger is not None else "none")
        return out | {"roles": roles, "pid": os.getpid()}  # which worker answered (ztcp serve --workers N)

    def _decision_log(self) -> dict[str, Any]:
        log = self.runtime.point.log
        return {"ok": log.healthy, "error": log.last_error}

    def _signal_history(self) -> dict[str, Any]:
        # Writing behind works and, with replicas (ZTCP_DATABASE_URL), the others' observations
        # arrive; tail_lag_ms is how old the proof of being caught up is.
        return self.runtime.point.history.status()

    def _ledger(self) -> dict[str, Any]:
        # Appends go on while the checkpoint key cannot sign (they stay durable and the next
        # checkpoint covers them), so that is reported, not a reason to stop serving.
        ledger = self.runtime.ledger
        ledger.store.probe()  # can it durably write now? (a read-only or full disk, a held lock)
        # The file's size, not the one this process last wrote: CLI commands append to the same file
        # (`ztcp audit trace` records its query), and a cached size would lag behind them.
        ledger.refresh()
        out: dict[str, Any] = {"ok": True, "size": ledger.size,
                               "checkpoint_key": "vault" if self.runtime.settings.checkpoint_in_vault else "local"}
        if ledger.checkpoint_error:
            out["checkpoint_error"] = ledger.checkpoint_error.split(":", 1)[0]  # the type, never a URL
        if ledger.publish_error:
            out["publish_error"] = ledger.publish_error.split(":", 1)[0]
        store = ledger.store
        if isinstance(store, PostgresLedgerStore):  # the server must answer (else appends fail: not ready)
            size, sequenced = store.size(), store.sequenced_size()
            integrator = store.integrator_status()
            out |= {"size": size, "store": "postgresql", "integrator": integrator["role"],
                    "waiting": sequenced - size}  # acknowledged, not yet in the tree
            if integrator.get("error"):
                out["integrator_error"] = integrator["error"].split(":", 1)[0]
        witnessing = self.runtime.witnessing
        if witnessing is not None:  # reported, not required: appends go on, the next checkpoint catches up
            out["witnesses"] = witnessing.status()
        stamper = self.runtime.stamper
        if stamper is not None:  # reported, not required: the gap is stamped when the TSA answers again
            stamps = stamper.status()
            out["timestamping"] = {**stamps, "error": (stamps["error"] or "").split(":", 1)[0] or None}
        return out

    def _keys(self) -> dict[str, Any]:
        import keymgmt

        provider = self.runtime.key_provider
        try:
            version = provider.info(DATA_KEK).latest_version
        except keymgmt.KeyNotFound:  # reachable; the data key is created with the first encrypted table
            version = None
        return {"ok": True, "provider": type(provider).__name__, "data_kek_version": version}

    def _protected_db(self) -> dict[str, Any]:
        import sqlalchemy as sa

        engine = self.runtime.protected_engine
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"ok": True, "dialect": engine.dialect.name}


def _guard(check: Check) -> dict[str, Any]:
    try:
        return check()
    except Exception as exc:  # readiness reports; it never raises, and names no secrets or values
        return {"ok": False, "error": type(exc).__name__}
