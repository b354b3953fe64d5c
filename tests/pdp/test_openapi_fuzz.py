"""Schemathesis over /openapi.json: whatever the input, the API never answers 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings

_runtime = None


def _app():
    global _runtime
    import tempfile

    _runtime = Runtime(load_settings(home=tempfile.mkdtemp(prefix="ztcp-fuzz-"), engine_timeout_ms=2000))
    return create_app(_runtime)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    token = _runtime.issuer.issue_client("fuzzer", ["pdp:decide", "pdp:audit", "provenance:write",
                                                    "provenance:read", "bundles:read"])
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        assert content_type[0].startswith("application/problem+json"), (case.path, response.status_code)
