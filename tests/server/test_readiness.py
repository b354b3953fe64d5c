"""`/readyz` names each dependency; a broken required one makes the server not ready (503)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import keymgmt
import server.readiness
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings


def _client(runtime: Runtime, siem=None) -> TestClient:  # noqa: ANN001
    return TestClient(create_app(runtime, siem))


@pytest.fixture
def runtime():
    rt = Runtime(load_settings(engine_timeout_ms=2000))
    yield rt
    rt.close()


def test_every_dependency_is_reported(runtime):
    with _client(runtime) as client:
        r = client.get("/readyz")
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert set(checks) >= {"policy", "decision_log", "signal_history", "ledger", "keys", "protected_db"}
    assert checks["signal_history"]["ok"] and checks["signal_history"]["store"] == "SqliteSignalStore"
    assert checks["keys"] == {"ok": True, "provider": "LocalKeyring", "data_kek_version": None}
    assert checks["protected_db"] == {"ok": True, "dialect": "sqlite"}
    assert checks["ledger"]["checkpoint_key"] == "local" and "checkpoint_error" not in checks["ledger"]


def test_a_keyring_that_cannot_be_read_is_not_ready(runtime, monkeypatch):
    monkeypatch.setattr(server.readiness, "CACHE_SECONDS", 0)
    with _client(runtime) as client:
        assert client.get("/readyz").status_code == 200
        keymgmt.default_keyring_path(runtime.home).write_bytes(b"not a keyring")
        r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["keys"]["ok"] is False


def test_an_unreachable_protected_database_is_not_ready(unused_tcp_port):
    # PostgreSQL URL on a port nothing listens on: the gateway could not read a single record.
    settings = load_settings(engine_timeout_ms=2000,
                             protected_db=f"postgresql+psycopg://ztcp@127.0.0.1:{unused_tcp_port}/ztcp")
    rt = Runtime(settings)
    try:
        with _client(rt) as client:
            r = client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["protected_db"]["ok"] is False
        assert body["checks"]["protected_db"]["error"] == "OperationalError"
        assert "ztcp@" not in r.text  # the connection URL (it may hold credentials) is never echoed
    finally:
        rt.close()


class _FailingSiem:
    running = True
    runs = 3
    last_error = "OperationalError: database is locked"


def test_a_failing_siem_run_is_reported_but_does_not_stop_decisions(runtime):
    with _client(runtime, _FailingSiem()) as client:
        r = client.get("/readyz")
    assert r.status_code == 200
    siem = r.json()["checks"]["siem"]
    assert siem == {"ok": False, "required": False, "runs": 3, "error": "OperationalError: database is locked"}
