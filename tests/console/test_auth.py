"""Sign-in, sessions, CSRF and role enforcement through the PDP."""

from __future__ import annotations

import re
import time

from console.sessions import Session, SessionStore


def test_root_redirects_to_the_console_and_pages_need_a_session(browser) -> None:
    r = browser.client.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    for path in ("/console/", "/console/audit", "/console/alerts", "/console/policy", "/console/keys"):
        r = browser.client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/console/signin", path


def test_dev_signin_lists_the_directory_and_is_labelled(browser) -> None:
    r = browser.client.get("/console/signin")
    assert r.status_code == 200
    assert "Development sign-in" in r.text and "no password is checked" in r.text
    assert "emp-aud-1" in r.text and "林稽核" in r.text
    assert "emp-officer" not in r.text  # a case officer has no console role: not offered
    assert "soc_analyst" in r.text


def test_session_cookie_is_httponly_strict_and_scoped(browser, world) -> None:  # noqa: ANN001
    token = browser.login_csrf()
    r = browser.client.post("/console/signin/dev", data={"csrf": token, "staff": "emp-aud-1"})
    assert r.status_code == 303
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ztcp_console_session="))
    flags = {p.strip().lower() for p in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    assert "secure" not in flags  # plain http here; see the https test below
    raw = cookie.split(";")[0].split("=", 1)[1]
    console_sessions = _console(world).sessions
    assert len(console_sessions) == 1 and raw not in console_sessions._sessions  # stored hashed only


def test_session_cookie_is_secure_over_https(new_browser) -> None:  # noqa: ANN001
    with new_browser(https=True) as b:
        token = b.login_csrf()
        r = b.client.post("/console/signin/dev", data={"csrf": token, "staff": "emp-aud-1"})
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ztcp_console_session="))
    assert "secure" in cookie.lower()


def test_dev_signin_refuses_missing_login_csrf_and_unknown_staff(browser) -> None:
    r = browser.client.post("/console/signin/dev", data={"staff": "emp-aud-1"})
    assert r.status_code == 403 and "ztcp_console_session" not in r.headers.get("set-cookie", "")
    token = browser.login_csrf()
    r = browser.client.post("/console/signin/dev", data={"csrf": token + "x", "staff": "emp-aud-1"})
    assert r.status_code == 403
    r = browser.client.post("/console/signin/dev", data={"csrf": token, "staff": "emp-officer"})
    assert r.status_code == 400  # no console role
    r = browser.client.post("/console/signin/dev", content=b'{"staff": "emp-aud-1"}',
                            headers={"content-type": "application/json"})
    assert r.status_code == 415


def test_signout_needs_csrf_and_ends_the_session(browser) -> None:
    browser.sign_in("emp-aud-1")
    assert browser.client.get("/console/audit").status_code == 200
    r = browser.client.post("/console/signout", data={"csrf": "forged"})
    assert r.status_code == 403
    assert browser.client.get("/console/audit").status_code == 200  # still signed in
    r = browser.post("/console/signout", {}, csrf_from="/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    assert browser.client.get("/console/audit").status_code == 303


def test_a_new_signin_gets_a_new_session_id(browser, world) -> None:  # noqa: ANN001
    browser.sign_in("emp-aud-1")
    first = browser.client.cookies.get("ztcp_console_session")
    browser.sign_in("emp-soc-1")
    second = browser.client.cookies.get("ztcp_console_session")
    assert first != second and len(_console(world).sessions) == 1


def test_post_without_csrf_is_refused_and_records_nothing(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    browser.sign_in("emp-aud-1")
    before = rt.ledger.size
    r = browser.client.post("/console/audit/trace", data={"citizen_ref": facts["ref_x"]})
    assert r.status_code == 403 and "did not come from this console" in r.text
    r = browser.client.post("/console/audit/trace", data={"citizen_ref": facts["ref_x"], "csrf": "0" * 43})
    assert r.status_code == 403
    assert rt.ledger.size == before


def test_pages_are_enforced_by_the_pdp_with_reasons(world, new_browser) -> None:  # noqa: ANN001
    rt, _, _ = world
    cases = [  # (staff, path, status, reason shown on a 403)
        ("emp-key-1", "/console/audit", 403, "action_not_permitted"),  # custodians only read key events
        ("emp-key-1", "/console/alerts", 403, "dataset_not_permitted"),
        ("emp-key-1", "/console/keys", 200, None),
        ("emp-soc-1", "/console/alerts", 200, None),
        ("emp-soc-1", "/console/policy", 403, "dataset_not_permitted"),
        ("emp-aud-1", "/console/policy", 403, "dataset_not_permitted"),
        ("emp-so-2", "/console/policy", 200, None),
        ("emp-aud-1", "/console/audit", 200, None),
    ]
    for staff, path, status, reason in cases:
        with new_browser() as b:
            b.sign_in(staff)
            r = b.client.get(path)
        assert r.status_code == status, (staff, path, r.text[:300])
        if reason:
            shown = re.findall(r"<li><code>([a-z_]+)</code></li>", r.text)
            assert reason in shown and "Access refused by the policy decision point" in r.text, (staff, path, shown)
    assert rt.point.log.flush()
    console_denies = [e for e in rt.decision_log.entries(last=200)
                      if e.get("requested_by") == "ztcp-console" and e["result"]["effect"] == "deny"]
    assert len(console_denies) >= 4  # each refusal is a logged decision like any other


def test_soc_analyst_cannot_approve_a_revision(world, new_browser) -> None:  # noqa: ANN001
    rt, _, facts = world
    with new_browser() as b:
        b.sign_in("emp-soc-1")
        r = b.post(f"/console/policy/{facts['proposed']}/approve", {}, csrf_from="/console/")
    assert r.status_code == 403 and "dataset_not_permitted" in r.text
    assert rt.revision_store.get(facts["proposed"]).status == "proposed"


def test_an_unmanaged_device_on_a_first_visit_must_step_up(world, new_browser, monkeypatch) -> None:  # noqa: ANN001
    """Without an access proxy vouching for devices the console says so to the PDP: an unmanaged,
    new device reaching a dataset for the first time scores 25 + 10 + 5 = 40, the step-up line."""
    console = _console(world)
    monkeypatch.setattr(console.settings, "managed_devices", False)
    with new_browser() as b:
        b.sign_in("emp-aud-1")
        r = b.client.get("/console/audit")
    assert r.status_code == 403
    assert "risk_too_high" in r.text and "unmanaged_device" in r.text and "step_up" in r.text


def test_expired_dev_token_is_reminted_and_expired_oidc_token_signs_out(browser, world) -> None:  # noqa: ANN001
    browser.sign_in("emp-aud-1")
    console = _console(world)
    (session,) = console.sessions._sessions.values()
    session.token_expires = time.time() - 1
    assert browser.client.get("/console/audit").status_code == 200
    assert session.token_expires > time.time() + 60  # a fresh dev token (same claims, new life)
    assert world[0].verifier.verify_subject(session.token).id == "emp-aud-1"
    session.mode, session.token_expires = "oidc", time.time() - 1
    r = browser.client.get("/console/audit")
    assert r.status_code == 303 and r.headers["location"] == "/console/signin?expired=1"


def test_session_store_idle_and_absolute_expiry() -> None:
    store = SessionStore(idle_seconds=60, absolute_seconds=300)
    s = Session("emp-1", "n", ("auditor",), None, "tok", time.time() + 600, "dev")
    raw = store.create(s)
    t0 = s.created
    assert store.get(raw, now=t0 + 59) is s
    assert store.get(raw, now=t0 + 59 + 61) is None  # idle
    raw = store.create(Session("emp-1", "n", ("auditor",), None, "tok", time.time() + 600, "dev"))
    (s2,) = store._sessions.values()
    for step in range(1, 6):  # active every 55 s, yet the absolute limit still ends it
        assert store.get(raw, now=s2.created + 55 * step) is s2
    assert store.get(raw, now=s2.created + 301) is None
    assert store.get("not-a-session") is None and store.get(None) is None


def test_session_store_is_bounded() -> None:
    store = SessionStore(60, 300, max_sessions=10)
    for _ in range(25):
        store.create(Session("emp-1", "n", (), None, "tok", time.time() + 600, "dev"))
    assert len(store) == 10


def test_pending_oidc_login_is_single_use_and_bound_to_state() -> None:
    store = SessionStore(60, 300)
    raw, pending = store.begin_login()
    assert store.finish_login(raw, "wrong-state") is None
    assert store.finish_login(raw, pending.state) is None  # consumed by the failed attempt
    raw, pending = store.begin_login()
    assert store.finish_login(raw, pending.state) is pending
    assert store.finish_login(raw, pending.state) is None


def _console(world):  # noqa: ANN001, ANN202
    return world[1].state.console


def test_a_dev_session_follows_the_directory_when_its_token_is_renewed(browser, world) -> None:  # noqa: ANN001
    import json

    rt, _, _ = world
    browser.sign_in("emp-aud-1")
    session = next(iter(_console(world).sessions._sessions.values()))
    path = rt.home / "directory.json"
    doc = json.loads(path.read_text())
    doc["staff"] = [s for s in doc["staff"] if s.get("id") != "emp-aud-1"]
    path.write_text(json.dumps(doc))
    assert browser.client.get("/console/audit").status_code == 200  # the current token is still valid
    session.token_expires = time.time() - 1
    r = browser.client.get("/console/audit")
    assert r.status_code == 303 and r.headers["location"] == "/console/signin?expired=1"


def test_device_posture_default_depends_on_the_sign_in_mode(world, monkeypatch) -> None:  # noqa: ANN001
    console = _console(world)
    monkeypatch.setattr(console.settings, "managed_devices", None)
    assert console.managed_devices is True  # development issuer: a local demo, nothing real to protect
    monkeypatch.setattr(world[0].settings, "idp_issuer", "https://idp.example")
    assert console.managed_devices is False  # a real IdP: only an explicit setting vouches for devices
    monkeypatch.setattr(console.settings, "managed_devices", True)
    assert console.managed_devices is True


def test_oversized_or_malformed_forms_are_refused_cleanly(browser, world) -> None:  # noqa: ANN001
    rt, _, _ = world
    browser.sign_in("emp-aud-1")
    before = rt.ledger.size
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = browser.client.post("/console/audit/trace", content=b"citizen_ref=" + b"A" * 70_000, headers=form)
    assert r.status_code == 413 and "too large" in r.text
    r = browser.client.post("/console/audit/trace", content=b"citizen_ref=\xff\xfe", headers=form)
    assert r.status_code == 400 and "could not be read" in r.text
    r = browser.client.post("/console/audit/trace", content="&".join(f"f{i}=1" for i in range(80)).encode(),
                            headers=form)
    assert r.status_code == 400
    assert rt.ledger.size == before
