"""Message catalogs (English, Traditional Chinese) and locale negotiation.

Every user-visible string of the console goes through :class:`Catalog`; the catalogs are JSON
files in ``catalogs/`` with the same keys (a test keeps them in step).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALES = ("en", "zh-TW")
DEFAULT_LOCALE = "en"
COOKIE = "ztcp_lang"
_DIR = Path(__file__).parent / "catalogs"


@cache
def messages(locale: str) -> dict[str, str]:
    return json.loads((_DIR / f"{locale}.json").read_text(encoding="utf-8"))


class Catalog:
    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT_LOCALE
        self._messages = messages(self.locale)
        self._fallback = messages(DEFAULT_LOCALE)

    def __call__(self, key: str, **values: object) -> str:
        text = self._messages.get(key) or self._fallback.get(key)
        if text is None:
            raise KeyError(f"console message {key!r} is in no catalog")
        return text.format(**values) if values else text

    def lookup(self, key: str, fallback: str) -> str:
        """For keys built from data (a status, a level): a value the catalog lacks is shown as is."""
        return self._messages.get(key) or self._fallback.get(key) or fallback


def _match(tag: str) -> str | None:
    tag = tag.strip().lower().replace("_", "-")
    if not tag:
        return None
    if tag.startswith("zh"):
        # Traditional Chinese for zh-TW/HK/MO and zh-Hant; Simplified readers still get Chinese.
        return "zh-TW"
    if tag.startswith("en"):
        return "en"
    return None


def negotiate(accept_language: str | None, cookie: str | None) -> str:
    """The cookie (the user's explicit choice) wins; then Accept-Language by q-value; then English."""
    if cookie in LOCALES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "")[:512].split(",")):
        tag, _, params = part.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        found = _match(tag)
        if found and q > 0:
            ranked.append((-q, i, found))
    return sorted(ranked)[0][2] if ranked else DEFAULT_LOCALE
