"""The console in headless Chromium against a real `ztcp serve`: sign in, trace a citizen, acknowledge
an alert, approve another officer's revision, and switch to Traditional Chinese. Screenshots are
saved under tests/artifacts/ for the README and for reviewers."""

from __future__ import annotations

import re
from pathlib import Path

from server.siem import DB_NAME
from siem_rules import AlertStore, connect


def sign_in(page, base: str, staff: str) -> None:  # noqa: ANN001
    page.goto(f"{base}/")
    assert page.url.endswith("/console/signin")
    page.get_by_label("Staff member").select_option(staff)
    page.get_by_role("button", name="Sign in as this person").click()
    page.wait_for_url(f"{base}/console/")
    assert page.get_by_text("development sign-in", exact=True).is_visible()


def shot(page, name: str) -> None:  # noqa: ANN001
    page.screenshot(path=str(Path(__file__).resolve().parents[1] / "artifacts" / f"console-{name}.png"),
                    full_page=True)


def test_auditor_traces_a_citizen(page, served) -> None:  # noqa: ANN001
    base, facts, _ = served
    sign_in(page, base, "emp-aud-1")
    shot(page, "01-home")
    # Keyboard: the first Tab reaches the skip link, and it is visible when focused.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    assert page.locator("a.skip").is_visible()

    page.get_by_role("link", name="Audit trace", exact=True).click()
    page.get_by_label("National ID").first.fill(facts["nid_x"])
    page.get_by_role("button", name="Trace").first.click()
    page.wait_for_url(f"{base}/console/audit/trace")
    summary = page.locator("#proof-summary").inner_text()
    assert re.search(r"(\d+) events: \1 verified, 0 not verified", summary), summary
    assert facts["nid_x"] not in page.url and facts["nid_x"] not in page.content()
    assert page.locator("#trace-ref").inner_text() == facts["ref_x"]
    assert page.locator("table.timeline tbody tr").count() >= 4
    assert page.locator("svg.lineage text", has_text="agency-tax").count() == 1
    shot(page, "02-trace")

    with page.expect_download() as dl:
        page.get_by_role("button", name="Download CSV").click()
    assert dl.value.suggested_filename.endswith(".csv")


def test_soc_analyst_acknowledges_an_alert(page, served) -> None:  # noqa: ANN001
    base, facts, home = served
    sign_in(page, base, "emp-soc-1")
    page.get_by_role("link", name="SOC alerts", exact=True).click()
    page.get_by_label("Rule").select_option("access_without_case_or_purpose")
    page.get_by_role("button", name="Filter").click()
    shot(page, "03-alerts")
    page.get_by_role("link", name="Personal data accessed without a purpose or case").click()
    assert page.locator("table.evidence tbody tr").count() >= 1
    page.get_by_role("button", name="Acknowledge").click()
    assert page.locator("#alert-status").inner_text() == "acknowledged"
    assert page.get_by_role("status").first.inner_text() == "The alert is now acknowledged."
    shot(page, "04-alert-acknowledged")
    conn = connect(home / DB_NAME)
    try:
        assert AlertStore(conn).get(facts["alert_id"]).status == "acknowledged"
    finally:
        conn.close()


def test_second_officer_approves_a_revision(page, served) -> None:  # noqa: ANN001
    base, facts, _ = served
    rev = facts["proposed"]
    sign_in(page, base, "emp-so-2")
    page.get_by_role("link", name="Policy", exact=True).click()
    page.get_by_role("link", name=rev, exact=True).click()
    page.get_by_role("link", name="Show the changes").click()
    assert page.locator("pre.diff .add", has_text='"call_center": 12').count() >= 1
    page.go_back()
    page.get_by_label("Review note (optional)").fill("simulated: no effect changes")
    page.once("dialog", lambda d: d.accept())  # the confirm() of console.js
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(rf".*/console/policy/{rev}\?done=approve$"))
    assert page.locator("#rev-status").inner_text().startswith("approved")
    shot(page, "05-policy-approved")


def test_author_cannot_approve_and_language_switch(page, served) -> None:  # noqa: ANN001
    base, facts, _ = served
    sign_in(page, base, "emp-so-1")
    page.goto(f"{base}/console/policy/{facts['proposed']}")
    assert page.locator("#own-note").is_visible()
    assert page.get_by_role("button", name="Approve").count() == 0
    page.get_by_role("link", name="繁體中文").click()
    assert page.locator("html").get_attribute("lang") == "zh-TW"
    assert page.get_by_role("heading", level=1).inner_text().startswith("版本")
    shot(page, "06-zh-TW")
    page.get_by_role("button", name="登出").click()
    page.wait_for_url(f"{base}/console/signin")
    assert page.locator("html").get_attribute("lang") == "zh-TW"  # the choice is remembered
