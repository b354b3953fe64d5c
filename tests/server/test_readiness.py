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


def test_ledger_size_includes_appends_made_by_another_process(runtime):
    """`ztcp audit trace` appends its audit.trace event through its own Ledger: /readyz must count it
    (it used to show the size the server's Ledger object had cached)."""
    from contracts import ProvenanceEvent
    from server.ledger import ledger_from_settings

    with _client(runtime) as client:
        before = client.get("/readyz").json()["checks"]["ledger"]["size"]
        other = ledger_from_settings(runtime.settings)  # what a CLI command opens
        try:
            other.append([ProvenanceEvent(type="audit.trace", actor={"id": "aud-01", "type": "auditor"},
                                          query="trace table") for _ in range(3)])
            size = other.size
        finally:
            other.close()
        after = client.get("/readyz").json()["checks"]["ledger"]["size"]
    assert size == before + 3
    assert after == size


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


def test_a_ledger_that_cannot_write_is_not_ready(runtime):
    """Issue #13 finding 8: /readyz wrote nothing and said the ledger was ok. It now proves a write:
    while another process holds the ledger's write lock (a stuck writer, a locked or full disk)
    the server is not ready, and it is again once the lock is released."""
    import sqlite3

    with _client(runtime) as client:
        assert client.get("/readyz").json()["checks"]["ledger"]["ok"] is True
        holder = sqlite3.connect(runtime.home / "provenance.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["ledger"] == {"ok": False, "error": "LedgerUnavailable"}
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.get("/readyz").status_code == 200


def test_delivery_is_reported_degraded_never_required(runtime, tmp_path):
    """A syslog receiver that is down: /readyz stays 200 (decisions go on) and shows the channel's
    backlog and error; the outbox keeps the alert for later."""
    import socket

    from server.delivery import make_delivery_thread
    from siem_rules import Engine, connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    runtime.settings.syslog_url = f"tcp://127.0.0.1:{dead}"
    from demo.siem_week import Traffic

    engine = Engine(connect(runtime.siem_db_path))  # one critical alert to deliver
    engine.store.ingest(Traffic(seed=3, employees=2).incidents()["fraud"][1])
    engine.run()
    thread = make_delivery_thread(runtime.settings)
    thread.delivery_factory().tick()  # one pass, as the thread would
    with TestClient(create_app(runtime, None, thread)) as client:
        r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    check = r.json()["checks"]["delivery"]
    syslog = check["channels"]["syslog"]
    assert check["required"] is False and check["ok"] is False
    assert syslog["backlog"] == 1 and syslog["last_error"] == "cannot connect: connection refused"
    assert str(dead) not in str(check)
