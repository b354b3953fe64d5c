"""Security headers, no inline script or style (the CSP forbids them), and accessible markup."""

from __future__ import annotations

import re
from pathlib import Path

from console import app as console_app

TEMPLATES = Path(console_app.__file__).parent / "templates"


def test_security_headers_on_every_console_page(browser) -> None:  # noqa: ANN001
    browser.sign_in("emp-aud-1")
    for path in ("/console/signin", "/console/", "/console/audit", "/console/alerts"):
        r = browser.client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        assert "default-src 'none'" in csp and "form-action 'self'" in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
    r = browser.client.get("/console/static/console.css")
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    assert "no-store" not in browser.client.get("/v1/../healthz").headers.get("cache-control", "")


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    for path in TEMPLATES.glob("*.j2"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path.name
        assert not re.search(r"<style\b|\sstyle=", text), path.name
        assert not re.search(r"\son[a-z]+=", text), path.name


def test_pages_have_lang_landmarks_labels_and_a_skip_link(browser) -> None:  # noqa: ANN001
    browser.sign_in("emp-aud-1")
    r = browser.client.get("/console/audit")
    html = r.text
    assert '<html lang="en">' in html and '<a class="skip" href="#main">' in html
    assert '<main id="main"' in html and 'role="banner"' in html and 'role="contentinfo"' in html
    assert html.count("<nav ") >= 2 and 'aria-current="page"' in html
    for field in re.findall(r'<input id="([^"]+)"', html):
        assert f'<label for="{field}">' in html, field
    for field in re.findall(r'<select id="([^"]+)"', html):
        assert f'<label for="{field}">' in html, field


def test_a_focus_style_is_visible() -> None:
    css = (Path(console_app.__file__).parent / "static" / "console.css").read_text()
    assert re.search(r":focus-visible\s*{[^}]*outline:\s*3px", css)


def test_unknown_console_paths_get_an_html_404_and_static_files_still_load(browser) -> None:  # noqa: ANN001
    r = browser.client.get("/console/nowhere/at/all")
    assert r.status_code == 404 and "There is no such page." in r.text and r.headers["content-type"].startswith(
        "text/html")
    assert browser.client.get("/console/static/console.js").status_code == 200
    assert browser.client.get("/console/static/missing.js").status_code == 404
    assert browser.client.get("/v1/nowhere").headers["content-type"].startswith("application/problem+json")
