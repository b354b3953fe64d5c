"""ZTCP_DATABASE_URL: the installation's ledger in PostgreSQL, through the same commands as SQLite.

`ztcp audit verify`, `ztcp audit trace`, `ztcp backup create/verify` and `/readyz` on a real
PostgreSQL; the setting is refused when it is not a postgresql:// URL, without repeating it.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import contracts
from cli.main import ztcp
from provenance.postgres_store import PostgresLedgerStore
from provenance.sqlite_store import SqliteLedgerStore
from server.app import create_app
from server.bootstrap import system_keys
from server.errors import ConfigError
from server.identity import dev_issuer
from server.ledger import LEDGER_FILE, ledger_from_settings, ledger_store
from server.runtime import Runtime
from server.settings import load_settings

NATIONAL_ID = "A123456789"


def _invoke(*args: str, env: dict | None = None):  # noqa: ANN202
    return CliRunner().invoke(ztcp, list(args), env=env, catch_exceptions=False)


def _events(ref: str, n: int, start: int = 0) -> list[contracts.ProvenanceEvent]:
    return [contracts.ProvenanceEvent(type="pii.read", actor="emp-9", citizen_ref=ref, dataset="claims",
                                      record_id=str(start + i), fields=["claim_status"], purpose="benefit_review")
            for i in range(n)]


@pytest.fixture
def on_postgres(pg_dsn: str, ztcp_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ZTCP_DATABASE_URL", pg_dsn)
    return pg_dsn


def test_the_setting_chooses_the_driver(ztcp_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(ledger_store(load_settings()), SqliteLedgerStore)
    monkeypatch.setenv("ZTCP_DATABASE_URL", "postgresql://ztcp:hunter2@db.example:5432/ztcp")
    settings = load_settings()
    store = ledger_store(settings)
    assert isinstance(store, PostgresLedgerStore) and store.integrates_in_background
    assert store.location == "postgresql://ztcp@db.example:5432/ztcp (schema ztcp_ledger)"
    assert isinstance(ledger_store(settings, tmp_path / "copy.db"), SqliteLedgerStore)  # a backup's file stays a file


@pytest.mark.parametrize("url", ["mysql://ztcp:hunter2@db/ztcp", "hunter2", "sqlite:///hunter2.db"])
def test_a_url_that_is_not_postgresql_is_refused_without_repeating_it(monkeypatch: pytest.MonkeyPatch,
                                                                     url: str) -> None:
    monkeypatch.setenv("ZTCP_DATABASE_URL", url)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "ZTCP_DATABASE_URL" in str(exc.value) and "postgresql://" in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_audit_verify_trace_and_backup_work_on_postgresql(on_postgres: str, ztcp_home: Path, tmp_path: Path) -> None:
    settings = load_settings()
    keys = system_keys(settings)
    keys.ensure_all()
    ref = contracts.citizen_ref(NATIONAL_ID, keys.blind_index)
    with ledger_from_settings(settings, keys) as led:
        for i in range(0, 120, 40):
            led.append(_events(ref, 40, start=i))  # acknowledged; integrated by whoever needs the tree
    assert not (ztcp_home / LEDGER_FILE).exists()  # nothing of the ledger in the home

    r = _invoke("audit", "verify", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["size"] == 120

    auditor = dev_issuer(settings, keys).issue_subject("auditor-7", ["auditor"], mfa=True, ttl_seconds=600)
    r = _invoke("audit", "trace", "--citizen-ref", ref, "--json", env={"ZTCP_TOKEN": auditor})
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["all_verified"] is True and len(doc["events"]) == 121  # the trace's own record included
    assert doc["events"][-1]["event"]["type"] == "audit.trace"

    r = _invoke("backup", "create", str(tmp_path / "bk"), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["ledger_size"] == 121 and report["files"][LEDGER_FILE]["from"].startswith("postgresql://")
    assert _invoke("backup", "verify", str(tmp_path / "bk")).exit_code == 0

    with psycopg.connect(on_postgres, autocommit=True) as db:  # someone with database access edits history
        db.execute("UPDATE ztcp_ledger.entries SET body = convert_to(replace(convert_from(body, 'UTF8'), "
                   "'claim_status', 'claim_statux'), 'UTF8') WHERE seq = 17")
    r = _invoke("audit", "verify")
    assert r.exit_code == 3
    assert "seq 17" in r.output


def test_readiness_reports_the_integrator_and_an_unreachable_database(pg_factory, ztcp_home: Path,  # noqa: ANN001
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = pg_factory()
    monkeypatch.setenv("ZTCP_DATABASE_URL", cluster.url(cluster.create_database()))
    rt = Runtime(load_settings(engine_timeout_ms=2000))
    try:
        rt.recorder.record(_events("cr_" + "C" * 52, 1)[0])
        with TestClient(create_app(rt)) as client:
            r = client.get("/readyz")
            assert r.status_code == 200, r.text
            ledger = r.json()["checks"]["ledger"]
            assert ledger["ok"] and ledger["store"] == "postgresql" and ledger["integrator"] in ("leader", "standby")
            cluster.stop("immediate")
            r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["ledger"] == {"ok": False, "error": "LedgerUnavailable"}
        assert "postgres@" not in r.text
    finally:
        rt.close()
