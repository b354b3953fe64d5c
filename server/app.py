"""The FastAPI application: every component's router on one server (`ztcp serve`)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from joserfc.jwk import DictKey
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import gateway
from pdp import api as pdp_api
from pdp.http_auth import BearerAuth
from pdp.problems import install_problem_handlers
from policy import api as policy_api
from provenance import api as provenance_api
from server.limits import BodyLimit
from server.readiness import Readiness
from server.runtime import Runtime
from siem_rules import Scheduler

log = logging.getLogger("ztcp.app")


def create_app(runtime: Runtime, siem: Scheduler | None = None, delivery: Any = None) -> FastAPI:
    """The app over ``runtime``. Whoever owns the runtime closes it (after the server stops), so
    the decision log is drained after the last request, never before."""
    point = runtime.point  # build eagerly: a policy that fails to load stops startup, loudly
    runtime.reloader.start()  # follow published revisions (hot reload within ~1 s)
    auth = BearerAuth(runtime.verifier)

    app = FastAPI(
        title="ztcp",
        version="0.1.0",
        summary="Zero-trust policy decisions, provenance, field encryption and SIEM for a public agency",
        # ztcp exports Prometheus metrics (/metrics) and configures no OpenTelemetry; FastAPI's own
        # would otherwise look for providers on every request (measured: ~3 % of a decision's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    # The last added is the outermost: the decision lane sees a body BodyLimit has already counted.
    app.add_middleware(pdp_api.DecisionLane, point=point, verifier=runtime.verifier)
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)  # 413 before any parsing
    app.include_router(pdp_api.create_router(point, auth))
    app.include_router(policy_api.create_router(runtime.revision_store, auth))  # OPA bundle service
    app.include_router(gateway.create_router(runtime.gateway, runtime.verifier, runtime.context_resolver))
    app.include_router(provenance_api.create_router(runtime.ledger, runtime.recorder, auth,
                                                    sealed_cases=runtime.sealed_cases, clock=runtime.clock))
    from server.exchange import mount_exchange

    mount_exchange(app, runtime, auth)  # /v1/exchange/… (receipts from agencies; batch jobs)
    from console import mount_console

    mount_console(app, runtime)  # /console/… (auditor, SOC, officers, custodians); / redirects there

    @app.get("/.well-known/jwks.json", tags=["identity"], summary="Public keys: dev IdP and decision tokens")
    async def jwks() -> dict[str, list[DictKey]]:
        keys = list(runtime.issuer.jwks()["keys"]) if runtime.issuer else []
        keys.append({**runtime.decision_signer.public_jwk(), "use": "sig"})
        return {"keys": keys}

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    readiness = Readiness(runtime, siem, delivery)

    @app.get("/readyz", tags=["operations"], summary="Readiness of each dependency")
    def readyz() -> JSONResponse:  # sync: FastAPI runs it in the thread pool (checks may do I/O)
        ready, checks = readiness.report()
        return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

