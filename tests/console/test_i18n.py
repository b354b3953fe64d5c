"""Traditional Chinese and English: negotiation, the remembered switch, and complete catalogs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from console import i18n

TEMPLATES = Path(i18n.__file__).parent / "templates"
SOURCES = Path(i18n.__file__).parent


@pytest.mark.parametrize(("header", "cookie", "expected"), [
    ("zh-TW,zh;q=0.9,en;q=0.8", None, "zh-TW"),
    ("en-US,en;q=0.9,zh-TW;q=0.8", None, "en"),
    ("fr-FR,zh-Hant;q=0.5", None, "zh-TW"),
    ("zh-TW;q=0,en;q=0.1", None, "en"),
    ("de, fr", None, "en"),
    ("", None, "en"),
    (None, None, "en"),
    ("zh-TW", "en", "en"),
    ("en", "zh-TW", "zh-TW"),
    ("en", "klingon", "en"),
    ("zh;q=abc,en;q=0.2", None, "en"),
    ("x" * 5000, None, "en"),
])
def test_negotiation(header, cookie, expected) -> None:  # noqa: ANN001
    assert i18n.negotiate(header, cookie) == expected


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    en, zh = i18n.messages("en"), i18n.messages("zh-TW")
    assert set(en) == set(zh)
    for key in en:
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", zh[key])), key
        assert zh[key].strip(), key


def test_every_key_used_is_in_the_catalog() -> None:
    used: set[str] = set()
    for path in list(TEMPLATES.glob("*.j2")) + list(SOURCES.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\bt(?:\.lookup)?\(\s*["']([a-z_]+\.[a-zA-Z0-9_.-]+)["']""", text))
        used |= set(re.findall(r"""PageError\(\d+, "([a-z_.]+)\"""", text))
        used |= set(re.findall(r"""error\(ctx, \d+, "([a-z_.]+)\"""", text))
    # Keys built in templates from a prefix and a value.
    from console.soc_pages import LEVELS
    from siem_rules.alerts import STATUSES
    used |= {f"status.{s}" for s in STATUSES} | {f"level.{lv}" for lv in LEVELS}
    used |= {f"lang.{loc}" for loc in i18n.LOCALES} | {f"policy.done.{a}" for a in ("approve", "publish", "rollback")}
    used |= {f"revstatus.{s}" for s in ("proposed", "approved", "shadow", "published", "superseded", "rolled_back")}
    used |= {f"transfers.{d}" for d in ("outbound", "inbound")}  # console/audit_pages.py: transfers_of
    used |= {f"transfers.receipt_{s}" for s in ("received", "outstanding", "overdue", "none")}
    used |= {f"transfers.timestamp_{s}" for s in ("stamped", "pending", "none")}
    missing = sorted(k for k in used if not k.endswith(".") and k not in i18n.messages("en"))
    assert not missing
    assert len(used) > 150


def test_templates_hold_no_untranslated_prose() -> None:
    """Text between tags is either a catalog lookup, markup, or data — never an English sentence."""
    for path in TEMPLATES.glob("*.j2"):
        text = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", "", path.read_text(encoding="utf-8"), flags=re.S)
        text = re.sub(r"<[^>]+>", " ", text)
        words = [w for w in re.findall(r"[A-Za-z]{3,}", text) if w not in {"html", "doctype"}]
        assert not words, (path.name, words)


def test_accept_language_and_the_remembered_switch(browser) -> None:  # noqa: ANN001
    r = browser.client.get("/console/signin", headers={"Accept-Language": "zh-TW,zh;q=0.9"})
    assert '<html lang="zh-TW">' in r.text and "開發用登入" in r.text and "Development sign-in" not in r.text
    r = browser.client.get("/console/lang", params={"set": "en", "next": "/console/signin"},
                           headers={"Accept-Language": "zh-TW"})
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    assert "ztcp_lang=en" in r.headers["set-cookie"] and "samesite=strict" in r.headers["set-cookie"].lower()
    r = browser.client.get("/console/signin", headers={"Accept-Language": "zh-TW"})
    assert '<html lang="en">' in r.text and "Development sign-in" in r.text  # the choice wins
    browser.client.get("/console/lang", params={"set": "zh-TW"})
    browser.sign_in("emp-aud-1")
    r = browser.client.get("/console/audit")
    assert '<html lang="zh-TW">' in r.text and "身分證字號" in r.text


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/console/..//evil", "/other",
                                    "/console/\\evil.example"])
def test_language_switch_is_not_an_open_redirect(browser, target) -> None:  # noqa: ANN001
    r = browser.client.get("/console/lang", params={"set": "en", "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
