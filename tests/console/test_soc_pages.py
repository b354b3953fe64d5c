"""SOC analyst: alerts list with filters, detail with evidence, acknowledge / close like `ztcp siem ack`."""

from __future__ import annotations

import re

from server.siem import DB_NAME
from siem_rules import AlertStore, connect


def _status(rt, alert_id: str) -> str:  # noqa: ANN001
    conn = connect(rt.home / DB_NAME)
    try:
        return AlertStore(conn).get(alert_id).status
    finally:
        conn.close()


def test_alerts_list_and_filters(browser, world) -> None:  # noqa: ANN001
    _, _, facts = world
    browser.sign_in("emp-soc-1")
    r = browser.client.get("/console/alerts")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    listed = re.findall(r'href="/console/alerts/(al_[0-9a-f]+)"', r.text)
    assert set(listed) == set(facts["alerts"])
    assert "Personal data accessed without a purpose or case" in r.text
    r = browser.client.get("/console/alerts", params={"rule": "access_without_case_or_purpose", "status": "open"})
    assert re.findall(r'href="/console/alerts/(al_[0-9a-f]+)"', r.text) == [facts["alert_id"]]
    r = browser.client.get("/console/alerts", params={"status": "closed"})
    assert re.findall(r'href="/console/alerts/(al_[0-9a-f]+)"', r.text) == []
    r = browser.client.get("/console/alerts", params={"level": "medium", "rule": "access_without_case_or_purpose"})
    assert facts["alert_id"] in r.text
    assert browser.client.get("/console/alerts", params={"status": "bogus"}).status_code == 400
    assert browser.client.get("/console/alerts", params={"level": "extreme"}).status_code == 400


def test_alert_detail_shows_evidence_events(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    browser.sign_in("emp-soc-1")
    r = browser.client.get(f"/console/alerts/{facts['alert_id']}")
    assert r.status_code == 200
    batch_read = next(e.event for e in rt.ledger.entries() if e.event.actor.id == "svc-batch-7")
    assert batch_read.event_id in r.text  # the evidence: the read without a case
    assert "svc-batch-7" in r.text and facts["ref_y"] in r.text and "provenance" in r.text
    assert facts["nid_y"] not in r.text  # references only
    assert browser.client.get("/console/alerts/al_doesnotexist").status_code == 404


def test_acknowledge_close_and_reopen(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    aid = facts["alert_id"]
    browser.sign_in("emp-soc-1")
    page = f"/console/alerts/{aid}"
    r = browser.post(f"{page}/status", {"status": "acknowledged"}, csrf_from=page)
    assert r.status_code == 303 and r.headers["location"] == f"{page}?done=acknowledged"
    assert _status(rt, aid) == "acknowledged"
    shown = browser.client.get(r.headers["location"])
    assert "The alert is now acknowledged." in shown.text and 'value="acknowledged"' not in shown.text
    assert browser.post(f"{page}/status", {"status": "closed"}, csrf_from=page).status_code == 303
    assert _status(rt, aid) == "closed"
    assert browser.post(f"{page}/status", {"status": "open"}, csrf_from=page).status_code == 303
    assert _status(rt, aid) == "open"
    assert browser.post(f"{page}/status", {"status": "deleted"}, csrf_from=page).status_code == 400
    assert browser.client.post(f"{page}/status", data={"status": "closed", "csrf": "x"}).status_code == 403
    assert browser.post("/console/alerts/al_nope/status", {"status": "closed"}, csrf_from=page).status_code == 404
    assert _status(rt, aid) == "open"


def test_an_auditor_reads_alerts_but_cannot_triage(new_browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    aid = facts["alert_id"]
    with new_browser() as b:
        b.sign_in("emp-aud-1")
        r = b.client.get(f"/console/alerts/{aid}")
        assert r.status_code == 200 and 'name="status"' not in r.text  # no triage buttons
        r = b.post(f"/console/alerts/{aid}/status", {"status": "closed"}, csrf_from=f"/console/alerts/{aid}")
    assert r.status_code == 403 and "action_not_permitted" in r.text
    assert _status(rt, aid) == "open"


def test_from_an_alert_an_auditor_traces_the_citizen_concerned(new_browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    with new_browser() as b:
        b.sign_in("emp-aud-1")
        page = f"/console/alerts/{facts['alert_id']}"
        r = b.client.get(page)
        assert "Trace this citizen" in r.text and f'name="citizen_ref" value="{facts["ref_y"]}"' in r.text
        assert "|name|" not in r.text  # list columns shown as lists
        r = b.post("/console/audit/trace", {"citizen_ref": facts["ref_y"]}, csrf_from=page)
    assert r.status_code == 200 and "svc-batch-7" in r.text
    (query,) = [e.event for e in rt.ledger.entries() if e.event.type == "audit.trace"]
    assert query.citizen_ref == facts["ref_y"] and query.actor.id == "emp-aud-1"


def test_drawing_a_page_asks_the_pdp_once_and_logs_no_deny(new_browser, world) -> None:  # noqa: ANN001
    """Buttons are drawn from the roles: probing the PDP for them would log denies, which raise the
    viewer's risk (recent_denies) and feed the SIEM's probing rules."""
    rt, _, facts = world
    assert rt.point.log.flush()
    before = len(rt.decision_log.entries(last=100_000))
    with new_browser() as b:
        b.sign_in("emp-aud-1")
        for _ in range(5):
            assert b.client.get(f"/console/alerts/{facts['alert_id']}").status_code == 200
    assert rt.point.log.flush()
    mine = [e for e in rt.decision_log.entries(last=100_000)[before:] if e.get("requested_by") == "ztcp-console"]
    assert len(mine) == 5 and all(e["result"]["effect"] == "permit" for e in mine)


def test_a_soc_analyst_tracing_from_an_alert_is_recorded_as_staff(new_browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    aid = facts["alert_id"]
    with new_browser() as b:
        b.sign_in("emp-soc-1")
        page = f"/console/alerts/{aid}"
        assert "Trace this citizen" in b.client.get(page).text
        r = b.post("/console/audit/trace", {"citizen_ref": facts["ref_y"], "alert_id": aid}, csrf_from=page)
    assert r.status_code == 200
    (query,) = [e.event for e in rt.ledger.entries() if e.event.type == "audit.trace"]
    assert query.actor.id == "emp-soc-1" and query.actor.type == "staff" and query.actor.roles == ["soc_analyst"]
    assert query.purpose is not None and query.purpose.code == "alert_investigation"
    assert query.purpose.case_id == aid and f"alert={aid}" in (query.query or "")


def test_a_soc_analyst_traces_only_the_citizens_of_an_open_alert(new_browser, world) -> None:  # noqa: ANN001
    # Issue #13 finding 5: need to know. Auditors trace anyone; a SOC analyst only from an alert
    # that is not closed and concerns that citizen.
    rt, _, facts = world
    aid = facts["alert_id"]
    page = f"/console/alerts/{aid}"
    with new_browser() as b:
        b.sign_in("emp-soc-1")
        for form in ({"citizen_ref": facts["ref_y"]},  # no alert named
                     {"citizen_ref": facts["ref_x"], "alert_id": aid},  # the alert is not about X
                     {"citizen_ref": facts["ref_y"], "alert_id": "al_0000000000"},  # no such alert
                     {"national_id": facts["nid_x"], "alert_id": aid}):
            r = b.post("/console/audit/trace", form, csrf_from=page)
            assert r.status_code == 403 and "open alert" in r.text, form
        conn = connect(rt.home / DB_NAME)
        try:
            AlertStore(conn).set_status(aid, "closed")
        finally:
            conn.close()
        r = b.post("/console/audit/trace", {"citizen_ref": facts["ref_y"], "alert_id": aid}, csrf_from=page)
        assert r.status_code == 403  # a closed alert is no longer a reason to look
    assert [e for e in rt.ledger.entries() if e.event.type == "audit.trace"] == []
    with new_browser() as b:  # the auditor keeps the unrestricted trace
        b.sign_in("emp-aud-1")
        assert b.post("/console/audit/trace", {"citizen_ref": facts["ref_x"]}, csrf_from="/console/audit"
                      ).status_code == 200
