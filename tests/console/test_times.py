"""Every time the console shows says which zone it is in (the CLI labels its UTC the same way).

A newcomer compared an alert's time in the console (Asia/Taipei, unlabelled) with ``ztcp siem
alerts`` (UTC) and saw two different times for one alert. Each ``<time>`` on each page that shows
times must now be named: by its column header, or on its own line or heading.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

TZ = "Asia/Taipei"


class _Times(HTMLParser):
    """Collects, for each ``<time>``, the header of its table column and the text around it."""

    BLOCKS = {"dd", "li", "p", "td"}

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []  # the current table's <th> texts
        self.in_th = False
        self.col = -1
        self.heading = ""  # the latest h1/h2 text
        self.in_heading = False
        self.block: list[str] | None = None
        self.block_times = 0
        self.found: list[tuple[str, str, str]] = []  # (column header, block text, heading)
        self.pending: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.headers = []
        elif tag == "tr":
            self.col = -1
        elif tag == "th":
            self.in_th = True
            self.headers.append("")
        elif tag == "td":
            self.col += 1
        elif tag in ("h1", "h2"):
            self.in_heading, self.heading = True, ""
        if tag in self.BLOCKS:
            self.block, self.block_times = [], 0
        if tag == "time":
            self.block_times += 1
            header = self.headers[self.col] if 0 <= self.col < len(self.headers) else ""
            self.pending.append(header)

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self.in_th = False
        elif tag in ("h1", "h2"):
            self.in_heading = False
        if tag in self.BLOCKS and self.block is not None:
            text = "".join(self.block)
            self.found += [(header, text, self.heading) for header in self.pending]
            self.pending, self.block = [], None

    def handle_data(self, data: str) -> None:
        if self.in_th and self.headers:
            self.headers[-1] += data
        if self.in_heading:
            self.heading += data
        if self.block is not None:
            self.block.append(data)


def _unlabelled(html: str) -> list[tuple[str, str, str]]:
    parser = _Times()
    parser.feed(html)
    assert parser.found, "the page shows no <time> at all"
    return [f for f in parser.found if not any(TZ in part for part in f)]


@pytest.mark.parametrize("staff,path", [
    ("emp-soc-1", "/console/alerts"),
    ("emp-soc-1", "/console/alerts/{alert_id}"),
    ("emp-key-1", "/console/keys"),
    ("emp-so-2", "/console/policy"),
    ("emp-so-2", "/console/policy/r1"),
])
def test_every_time_on_the_page_names_its_zone(browser, world, staff: str, path: str) -> None:  # noqa: ANN001
    rt, _, facts = world
    assert rt.settings.timezone == TZ
    browser.sign_in(staff)
    r = browser.client.get(path.format(alert_id=facts["alert_id"]))
    assert r.status_code == 200, r.text[:500]
    assert _unlabelled(r.text) == []


def test_the_trace_names_its_zone_in_the_timeline_and_the_checkpoint(browser, world) -> None:  # noqa: ANN001
    _, _, facts = world
    browser.sign_in("emp-aud-1")
    r = browser.post("/console/audit/trace", {"citizen_ref": facts["ref_x"]}, csrf_from="/console/audit")
    assert r.status_code == 200, r.text[:500]
    assert _unlabelled(r.text) == []
    assert f", {TZ})." in r.text  # "Proofs against signed checkpoint of size N (time, Asia/Taipei)."


def test_the_cli_and_the_console_show_one_alert_at_the_same_instant_each_labelled(browser, world) -> None:  # noqa: ANN001
    """`ztcp siem alerts` shows UTC and says so; the console shows the bureau's zone and says so."""
    import re
    from datetime import datetime, timedelta

    from click.testing import CliRunner

    from cli.main import ztcp

    _, _, facts = world
    out = CliRunner().invoke(ztcp, ["siem", "alerts"], env={"COLUMNS": "400"}, catch_exceptions=False).output
    assert "first seen (UTC)" in out and "last seen (UTC)" in out
    row = next(line for line in out.splitlines() if facts["alert_id"] in line)
    cli_first = datetime.fromisoformat(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row).group(0))

    browser.sign_in("emp-soc-1")
    page = browser.client.get("/console/alerts").text
    assert f"First seen ({TZ})" in page
    link = page.index(f"/console/alerts/{facts['alert_id']}")
    shown = re.search(r"<time[^>]*>([^<]+)</time>", page[link:]).group(1)
    assert datetime.fromisoformat(shown) - cli_first == timedelta(hours=8)  # Taipei is UTC+8, no DST
