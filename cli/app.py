"""The FastAPI application: every component's router on one server (`ztcp serve`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cli import gateway
from cli.runtime import Runtime
from pdp import api as pdp_api
from pdp.http_auth import BearerAuth
from pdp.problems import install_problem_handlers
from policy import api as policy_api
from provenance import api as provenance_api

log = logging.getLogger("ztcp.app")


def create_app(runtime: Runtime) -> FastAPI:
    """The app over ``runtime``. Whoever owns the runtime closes it (after the server stops), so
    the decision log is drained after the last request, never before."""
    point = runtime.point  # build eagerly: a policy that fails to load stops startup, loudly
    runtime.reloader.start()  # follow published revisions (hot reload within ~1 s)
    auth = BearerAuth(runtime.verifier)

    app = FastAPI(
        title="ztcp",
        version="0.1.0",
        summary="Zero-trust policy decisions, provenance, field encryption and SIEM for a public agency",
    )
    install_problem_handlers(app)
    app.include_router(pdp_api.create_router(point, auth))
    app.include_router(policy_api.create_router(runtime.revision_store, auth))  # OPA bundle service
    app.include_router(gateway.create_router(runtime))  # reference PEP: /v1/records, /v1/disclosures
    app.include_router(provenance_api.create_router(runtime.ledger, runtime.recorder, auth,
                                                    sealed_cases=runtime.sealed_cases))
    from cli.console import mount_console

    mount_console(app, runtime)  # /console/… (auditor, SOC, officers, custodians); / redirects there

    @app.get("/.well-known/jwks.json", tags=["identity"], summary="Public keys: dev IdP and decision tokens")
    async def jwks() -> dict:
        keys = list(runtime.issuer.jwks()["keys"]) if runtime.issuer else []
        keys.append({**runtime.decision_signer.public_jwk(), "use": "sig"})
        return {"keys": keys}

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness of each dependency")
    async def readyz() -> JSONResponse:
        active = point.active
        checks = {
            "policy": {"ok": active is not None, "revision": active.revision if active else None,
                       "digest": active.digest if active else None,
                       "engine": active.engine.kind if active else None},
            "decision_log": {"ok": point.log.healthy, "error": point.log.last_error},
            "ledger": _ledger_check(runtime),
        }
        if runtime.reloader.last_error:
            checks["policy"]["reload_error"] = runtime.reloader.last_error
        if point.shadow is not None:
            checks["shadow_policy"] = {"ok": True, "revision": point.shadow.revision}
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _ledger_check(runtime: Runtime) -> dict:
    try:
        size = runtime.ledger.size
        return {"ok": True, "size": size}
    except Exception as exc:  # readiness reports; it never raises
        return {"ok": False, "error": type(exc).__name__}
