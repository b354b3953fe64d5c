"""Security officers: revisions, diff, simulation, and approve / publish / roll back with the CLI's
maker-checker rules (the revision store's own operations)."""

from __future__ import annotations

import re
import time


def _active(rt) -> str | None:  # noqa: ANN001
    return rt.revision_store.state().active


def test_revisions_list_and_show(browser, world) -> None:  # noqa: ANN001
    _, _, facts = world
    browser.sign_in("emp-so-2")
    r = browser.client.get("/console/policy")
    assert r.status_code == 200 and "Active revision: r1" in r.text
    assert f'href="/console/policy/{facts["proposed"]}"' in r.text and "call centre search limit" in r.text
    r = browser.client.get(f"/console/policy/{facts['proposed']}")
    assert r.status_code == 200 and "emp-so-1" in r.text and "policy.propose" in r.text
    assert browser.client.get("/console/policy/r99").status_code == 404


def test_diff_shows_the_change_against_the_parent(browser, world) -> None:  # noqa: ANN001
    _, _, facts = world
    browser.sign_in("emp-so-2")
    r = browser.client.get(f"/console/policy/{facts['proposed']}/diff")
    assert r.status_code == 200 and "Compared with r1" in r.text
    assert '<span class="del">-' in r.text and "&#34;call_center&#34;: 10" in r.text
    assert '<span class="add">+' in r.text and "&#34;call_center&#34;: 12" in r.text


def test_simulation_replays_logged_decisions(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    browser.sign_in("emp-so-2")
    page = f"/console/policy/{facts['proposed']}"
    token = browser.csrf(page)
    assert rt.point.log.flush()
    before = len(rt.decision_log.entries(last=1000))  # the seed's decisions and the console's own checks
    r = browser.client.post(f"{page}/simulate", data={"last": "1000", "csrf": token})
    assert r.status_code == 200, r.text[:400]
    m = re.search(r"Replayed (\d+) of (\d+) logged decisions: (\d+) would change, (\d+) unchanged", r.text)
    replayed, total, changed, unchanged = map(int, m.groups())
    assert before >= 3 and before <= total <= before + 2 and 1 <= replayed <= total
    assert changed + unchanged <= replayed
    assert browser.post(f"{page}/simulate", {"last": "5"}, csrf_from=page).status_code == 400


def test_maker_checker_approve_publish_rollback(new_browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    rev = facts["proposed"]
    page = f"/console/policy/{rev}"
    with new_browser() as author:
        author.sign_in("emp-so-1")
        r = author.client.get(page)
        assert 'id="own-note"' in r.text and f'action="{page}/approve"' not in r.text
        r = author.post(f"{page}/approve", {"comment": "lgtm"}, csrf_from=page)  # forged past the UI
        assert r.status_code == 409 and "cannot approve it (maker-checker)" in r.text
    assert rt.revision_store.get(rev).status == "proposed"
    refusals = [e for e in rt.revision_store.iter_since(None) if e.type == "policy.refused"]
    assert refusals and refusals[-1].actor == "emp-so-1"  # recorded like the CLI's refusal

    with new_browser() as checker:
        checker.sign_in("emp-so-2")
        r = checker.post(f"{page}/publish", {}, csrf_from=page)  # not approved yet
        assert r.status_code == 409
        r = checker.post(f"{page}/approve", {"comment": "checked the simulation"}, csrf_from=page)
        assert r.status_code == 303 and r.headers["location"] == f"{page}?done=approve"
        assert rt.revision_store.get(rev).status == "approved"
        assert "emp-so-2" in checker.client.get(page).text
        r = checker.post(f"{page}/publish", {}, csrf_from=page)
        assert r.status_code == 303
        assert _active(rt) == rev
        deadline = time.time() + 5
        while rt.point.active.revision != rev and time.time() < deadline:
            time.sleep(0.05)
        assert rt.point.active.revision == rev  # this PDP switched
        r = checker.post("/console/policy/r1/rollback", {"comment": "back out"}, csrf_from="/console/policy/r1")
        assert r.status_code == 303 and _active(rt) == "r1"
        assert checker.post(f"{page}/delete", {}, csrf_from=page).status_code == 404
