"""Log management page: retention status, legal holds, delivery backlog per channel, archives (read-only)."""

from __future__ import annotations

import re
import socket

import pytest


@pytest.fixture
def syslog_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SOC receiver that is down: a port nobody listens on (set before the server's settings load)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ZTCP_SYSLOG_URL", f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("ZTCP_SYSLOG_DECISIONS", "true")  # decisions too: their backlog is shown apart


def test_logs_page_shows_retention_holds_backlog_and_archives(syslog_down, browser, world) -> None:  # noqa: ANN001
    from server.delivery import make_delivery
    from server.holds import hold_store
    from server.retention import run_retention

    rt, _, facts = world
    settings = rt.settings
    r = browser.client.get("/console/logs")
    assert r.status_code in (302, 303, 401, 403)  # signed out: no figures
    browser.sign_in("emp-soc-1")
    r = browser.client.get("/console/logs")
    assert r.status_code == 200
    assert "Retention has not run yet" in r.text and "Legal holds (0 active)" in r.text
    # The receiver is down: alerts wait in the durable outbox.
    delivery = make_delivery(settings)
    delivery.tick()
    ref = "cr_" + "K" * 52
    hold_store(settings).add("citizen", ref, "court order 17", "auditor-1")
    run_retention(settings, apply=True)
    r = browser.client.get("/console/logs")
    assert r.status_code == 200
    backlog = re.search(r"<tr><td>syslog</td><td>(\d+)</td>", r.text)
    assert backlog and int(backlog.group(1)) == len(facts["alerts"]) > 0
    assert re.search(r"<tr><td>syslog.decisions</td><td>\d+</td>", r.text)
    assert "Legal holds (1 active)" in r.text and ref in r.text and "court order 17" in r.text
    assert "Last applied" in r.text and "<td>decisions</td>" in r.text
    assert "No archive segments yet." in r.text
    assert not re.search(r"<form[^>]*method=\"post\"[^>]*action=\"/console/logs", r.text)  # read-only
    ready = browser.client.get("/readyz").json()
    assert ready["checks"]["retention"]["holds"] == 1 and ready["checks"]["retention"]["required"] is False


def test_staff_without_a_soc_role_are_refused(browser, world) -> None:  # noqa: ANN001
    browser.sign_in("emp-key-1")
    assert browser.client.get("/console/logs").status_code == 403
