"""Two replicas of one deployment on one PostgreSQL (ZTCP_DATABASE_URL), in this process: whatever one
issues — a dev-IdP token, a decision token, a console session — the other accepts.

The second replica's home holds only the master key (no keyring file): its keys come from the
cluster, sealed in the database, as a replica added later gets them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest

from contracts.decision import DecisionRequest
from server.app import create_app
from server.runtime import BUREAU_DATA_FILE, Runtime
from server.settings import load_settings

_spec = importlib.util.spec_from_file_location("replicas", Path(__file__).parents[1] / "helpers" / "replicas.py")
_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_helpers)  # type: ignore[union-attr]

@pytest.fixture
def two(seeded_template, tmp_path, pg_dsn, monkeypatch):  # noqa: ANN001, ANN201
    template, facts = seeded_template
    monkeypatch.setenv("ZTCP_CONSOLE_MANAGED_DEVICES", "true")
    homes = [tmp_path / "a", tmp_path / "b"]
    shutil.copytree(template, homes[0])
    shutil.copytree(template, homes[1])
    (homes[1] / "keyring.sealed").unlink()  # B brings no keys: it must use the cluster's
    rts = []
    for home in homes:
        bureau = json.loads((home / BUREAU_DATA_FILE).read_text()) if (home / BUREAU_DATA_FILE).exists() else {}
        bureau.setdefault("cases", {}).update(_helpers.CASES)
        (home / BUREAU_DATA_FILE).write_text(json.dumps(bureau))
        rts.append(Runtime(load_settings(home=home, database_url=pg_dsn, engine_timeout_ms=2000)))
    apps = [create_app(rt) for rt in rts]
    yield rts, apps
    for rt in rts:
        rt.close()


def test_tokens_from_one_replica_verify_on_the_other(two) -> None:  # noqa: ANN001
    (a, b), _ = two
    clock = _helpers.Clock(time.time())
    doc = _helpers.request(a, clock, "emp-1")  # a subject token from A's dev IdP
    assert b.verifier.verify_subject(doc["subject_token"]).id == "emp-1"
    decision = a.point.decide(DecisionRequest.model_validate(doc))
    assert decision.effect == "permit" and decision.token
    claims = b.decision_verifier.verify(decision.token)  # B's gateway accepts A's decision token
    assert claims is not None
    assert b.keys.public_keys("bundle-signing") == a.keys.public_keys("bundle-signing")
    # And the cluster's key is the one A's home brought (existing installation keeps its keys).
    from keymgmt import LocalKeyring, load_master_key

    home_ring = LocalKeyring.open(a.home / "keyring.sealed", load_master_key(a.home, None))
    assert [k.public_bytes_raw() for k in home_ring.ed25519_public_keys("decision-signing").values()] == \
        [k.public_bytes_raw() for k in b.keys.public_keys("decision-signing")]


def test_a_console_session_from_one_replica_works_on_the_other(two) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    _, (app_a, app_b) = two
    on_a = TestClient(app_a, base_url="http://testserver", client=("127.0.0.1", 50000), follow_redirects=False)
    on_b = TestClient(app_b, base_url="http://testserver", client=("127.0.0.1", 50000), follow_redirects=False)
    with on_a, on_b:
        import re

        page = on_a.get("/console/signin").text
        csrf = re.search(r'name="csrf" id="login-csrf" value="([^"]+)"', page).group(1)
        r = on_a.post("/console/signin/dev", data={"csrf": csrf, "staff": "emp-aud-1"})
        assert r.status_code == 303 and r.headers["location"] == "/console/"
        assert on_b.get("/console/audit").status_code == 303  # B, without the cookie: sign in
        on_b.cookies.update(on_a.cookies)  # the load balancer sends the same browser to B
        r = on_b.get("/console/audit")
        assert r.status_code == 200, r.text[:300]
        # Its CSRF token is the session's, on every replica.
        csrf_b = re.search(r'name="csrf" value="([^"]+)"', on_b.get("/console/").text).group(1)
        csrf_a = re.search(r'name="csrf" value="([^"]+)"', on_a.get("/console/").text).group(1)
        assert csrf_a == csrf_b
        on_b.post("/console/signout", data={"csrf": csrf_b})  # signing out on B ends it on A too
        assert on_a.get("/console/audit").status_code == 303


def test_sessions_survive_a_database_outage_and_the_console_answers_503_meanwhile(seeded_template, tmp_path,  # noqa: ANN001
                                                                                   pg_factory, monkeypatch) -> None:
    import re

    from fastapi.testclient import TestClient

    template, _ = seeded_template
    monkeypatch.setenv("ZTCP_CONSOLE_MANAGED_DEVICES", "true")
    cluster = pg_factory()
    url = cluster.url(cluster.create_database())
    shutil.copytree(template, tmp_path / "a")
    rt = Runtime(load_settings(home=tmp_path / "a", database_url=url, engine_timeout_ms=2000))
    try:
        client = TestClient(create_app(rt), base_url="http://testserver", client=("127.0.0.1", 50000),
                            follow_redirects=False)
        with client:
            page = client.get("/console/signin").text
            csrf = re.search(r'name="csrf" id="login-csrf" value="([^"]+)"', page).group(1)
            assert client.post("/console/signin/dev", data={"csrf": csrf, "staff": "emp-aud-1"}).status_code == 303
            cluster.stop()
            r = client.get("/console/")
            assert r.status_code == 503 and "Retry-After" in r.headers and "emp-aud-1" not in r.text
            cluster.start()
            assert client.get("/console/").status_code == 200  # the same session, no new sign-in
    finally:
        rt.close()


def _raise_alert_on(rt) -> tuple[str, set[str]]:  # noqa: ANN001
    """The scheduler leader's run: a planted disclosure decision → its alert in the shared store (and
    the ids of every alert the run raised)."""
    from demo.siem_week import Traffic
    from server.siem import make_engine

    engine = make_engine(rt.settings)
    try:
        engine.store.ingest(Traffic(seed=5, employees=3).incidents()["disclosure"][1])
        raised = set(engine.run().alerts_touched)
        (alert,) = engine.alerts.list(rule_id=engine.pack.find("disclosure_to_unapproved_recipient").id)
    finally:
        engine.close()
    return alert.alert_id, raised


def test_an_alert_raised_by_the_leader_is_listed_and_triaged_on_the_other_replica(two) -> None:  # noqa: ANN001
    import re

    from fastapi.testclient import TestClient

    (a, b), (_, app_b) = two
    alert_id, raised = _raise_alert_on(a)
    on_b = TestClient(app_b, base_url="http://testserver", client=("127.0.0.1", 50000), follow_redirects=False)
    with on_b:
        page = on_b.get("/console/signin").text
        csrf = re.search(r'name="csrf" id="login-csrf" value="([^"]+)"', page).group(1)
        assert on_b.post("/console/signin/dev", data={"csrf": csrf, "staff": "emp-soc-1"}).status_code == 303
        listed = re.findall(r'href="/console/alerts/(al_[0-9a-f]+)"', on_b.get("/console/alerts").text)
        assert set(listed) == raised and alert_id in raised  # the cluster's alerts, not B's own siem.db
        detail = on_b.get(f"/console/alerts/{alert_id}")
        assert detail.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', detail.text).group(1)
        r = on_b.post(f"/console/alerts/{alert_id}/status", data={"csrf": csrf, "status": "acknowledged"})
        assert r.status_code == 303
    with a.alerts() as store:  # A (and the scheduler) see B's triage, with its actor
        assert store.get(alert_id).status == "acknowledged"
        assert [(h["type"], h["actor"]) for h in store.history(alert_id)] == [("alert.acknowledge", "emp-soc-1")]
        events, _ = store.events_after(None)
        assert [e["type"] for e in events] == ["alert.acknowledge"]
        assert store.verify_history() == (None, len(raised) + 1)


def test_the_alert_pages_answer_503_while_the_alert_database_is_unreachable(two, pg_dsn) -> None:  # noqa: ANN001
    import re

    import psycopg
    from fastapi.testclient import TestClient
    from psycopg.conninfo import conninfo_to_dict

    (a, _), (app_a, _) = two
    alert_id, _ = _raise_alert_on(a)
    dbname = conninfo_to_dict(pg_dsn)["dbname"]
    admin = pg_dsn.rsplit("/", 1)[0] + "/postgres"
    client = TestClient(app_a, base_url="http://testserver", client=("127.0.0.1", 50000), follow_redirects=False)
    with client, psycopg.connect(admin, autocommit=True) as db:
        page = client.get("/console/signin").text
        csrf = re.search(r'name="csrf" id="login-csrf" value="([^"]+)"', page).group(1)
        assert client.post("/console/signin/dev", data={"csrf": csrf, "staff": "emp-soc-1"}).status_code == 303
        assert client.get("/console/alerts").status_code == 200
        # The alert store's connections are cut and no new one is admitted (the session store keeps its own).
        db.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ztcp-siem'")
        try:
            for path in ("/console/alerts", f"/console/alerts/{alert_id}"):
                r = client.get(path)
                assert r.status_code == 503, (path, r.status_code, r.text[:300])
                assert r.headers["retry-after"] == "5" and "postgresql://" not in r.text
                assert "The alert database cannot be reached" in r.text  # the console page, signed in
        finally:
            db.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        # Back by itself: the pool reconnects (its retry backoff may take a few seconds).
        deadline = time.monotonic() + 20
        while (code := client.get("/console/alerts").status_code) != 200 and time.monotonic() < deadline:
            assert code == 503
            time.sleep(0.5)
        assert code == 200
