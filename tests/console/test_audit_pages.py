"""The auditor's trace: national ID only in the body, timeline with proofs, lineage SVG, exports,
and the audit.trace / audit.export record of every view."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET

SVG_NS = "{http://www.w3.org/2000/svg}"


def _audit_events(rt, kind: str) -> list:  # noqa: ANN001
    return [e.event for e in rt.ledger.entries() if e.event.type == kind]


def test_trace_by_national_id_shows_the_timeline_with_proofs_and_records_the_view(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    browser.sign_in("emp-aud-1")
    before = rt.ledger.size
    r = browser.post("/console/audit/trace", {"national_id": facts["nid_x"].lower()}, csrf_from="/console/audit")
    assert r.status_code == 200, r.text[:500]
    assert r.headers["cache-control"] == "no-store"
    # The national ID goes in the body, never the URL, and is never shown back.
    assert str(r.request.url).endswith("/console/audit/trace")
    assert facts["nid_x"] not in r.text and facts["nid_x"].lower() not in r.text
    assert facts["ref_x"] in r.text

    # Exactly one new ledger event: the auditor's own query, naming them, about this citizen.
    assert rt.ledger.size == before + 1
    (query,) = [e for e in _audit_events(rt, "audit.trace") if e.actor.id == "emp-aud-1"]
    assert query.citizen_ref == facts["ref_x"] and query.via.system == "ztcp-console"
    assert query.actor.type == "auditor" and "auditor" in query.actor.roles

    rows = re.findall(r'<tr class="proof-(\w+)">(.*?)</tr>', r.text, re.S)
    cells = [re.findall(r"<td>(.*?)</td>", body, re.S) for _, body in rows]
    types = [re.sub(r"<[^>]+>", "", c[2]) for c in cells]
    assert types.count("pii.read") == 2 and types.count("pii.disclose") == 1 and types.count("audit.trace") == 1
    read = next(c for c in cells if "pii.read" in c[2] and "name, address" in c[5])
    assert read[3] == "emp-officer" and read[6] == "benefit_review" and read[7] == "C-CON-0001"
    assert re.search(r"[0-9a-f-]{36}", read[8]) and read[9] == "permit"  # decision id and effect
    assert {k for k, _ in rows} == {"ok"}  # every event verified against the fresh signed checkpoint
    assert "4 events: 4 verified, 0 not verified, 0 pending" in r.text

    # The lineage picture: the read the disclosure came from, and the recipient agency.
    svg = re.search(r"<svg.*?</svg>", r.text, re.S).group(0)
    root = ET.fromstring(svg)  # noqa: S314 - our own output, parsed to check it is well-formed SVG
    texts = [t.text or "" for t in root.iter(f"{SVG_NS}text")]
    assert "agency-tax" in texts and any(t.startswith("#") and "pii.read" in t for t in texts)
    assert root.get("role") == "img" and root.find(f"{SVG_NS}title") is not None
    assert len(root.findall(f".//{SVG_NS}path")) >= 3  # citizen→read, read→disclosure, disclosure→recipient


def test_trace_by_citizen_ref_and_period(browser, world) -> None:  # noqa: ANN001
    _, _, facts = world
    browser.sign_in("emp-aud-1")
    r = browser.post("/console/audit/trace", {"citizen_ref": facts["ref_y"]}, csrf_from="/console/audit")
    assert r.status_code == 200 and "svc-batch-7" in r.text
    r = browser.post("/console/audit/trace", {"citizen_ref": facts["ref_y"], "since": "2001-01-01",
                                              "until": "2001-12-31"}, csrf_from="/console/audit")
    assert r.status_code == 200 and "No recorded access for this citizen in this period." in r.text


def test_bad_searches_are_refused_clearly_and_record_nothing(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    browser.sign_in("emp-aud-1")
    before = rt.ledger.size
    wrong_check = facts["nid_x"][:-1] + str((int(facts["nid_x"][-1]) + 1) % 10)
    cases = [
        ({"national_id": wrong_check}, "not a valid national ID"),
        ({"national_id": facts["nid_x"], "citizen_ref": facts["ref_x"]}, "not both"),
        ({}, "not both"),
        ({"citizen_ref": "cr_short"}, "52 base32"),
        ({"citizen_ref": facts["ref_x"], "since": "yesterday"}, "YYYY-MM-DD"),
    ]
    for form, message in cases:
        r = browser.post("/console/audit/trace", form, csrf_from="/console/audit")
        assert r.status_code == 400 and message in r.text, (form, r.text[:300])
        assert wrong_check not in r.text
    assert rt.ledger.size == before


def test_exports_reuse_provenance_reports_and_are_recorded(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    browser.sign_in("emp-aud-1")
    r = browser.post("/console/audit/export", {"citizen_ref": facts["ref_x"], "format": "csv"},
                     csrf_from="/console/audit")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;") and r.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["type"] for row in rows} >= {"pii.read", "pii.disclose", "audit.export"}
    assert all(row["proof"] == "verified" for row in rows)
    r = browser.post("/console/audit/export", {"citizen_ref": facts["ref_x"], "format": "pdf"},
                     csrf_from="/console/audit")
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    exports = [e for e in _audit_events(rt, "audit.export") if e.actor.id == "emp-aud-1"]
    assert len(exports) == 2 and all(e.citizen_ref == facts["ref_x"] for e in exports)
    r = browser.post("/console/audit/export", {"citizen_ref": facts["ref_x"], "format": "xlsx"},
                     csrf_from="/console/audit")
    assert r.status_code == 400


def test_an_unrecordable_trace_shows_nothing(browser, world) -> None:  # noqa: ANN001
    """Fail closed: if the ledger cannot record the auditor's query, the history is not shown."""
    rt, _, facts = world
    browser.sign_in("emp-aud-1")
    token = browser.csrf("/console/audit")
    rt.ledger.close()  # the ledger is gone: the recorder answers LedgerUnavailable
    r = browser.client.post("/console/audit/trace", data={"citizen_ref": facts["ref_x"], "csrf": token})
    assert r.status_code == 503 and "cannot record" in r.text
    assert "emp-officer" not in r.text and "<svg" not in r.text


def test_a_long_history_shows_the_newest_rows_and_says_so(browser, world, monkeypatch) -> None:  # noqa: ANN001
    from console import audit_pages

    _, _, facts = world
    monkeypatch.setattr(audit_pages, "MAX_ROWS_SHOWN", 2)
    browser.sign_in("emp-aud-1")
    r = browser.post("/console/audit/trace", {"citizen_ref": facts["ref_x"]}, csrf_from="/console/audit")
    assert r.status_code == 200
    assert len(re.findall(r'<tr class="proof-', r.text)) == 2
    assert "Showing the newest 2 events; 2 older ones" in r.text and "4 events: 4 verified" in r.text
    assert "audit.trace" in r.text  # the newest row: this very query


def test_times_are_shown_in_the_bureaus_zone_and_the_header_names_it(browser, world) -> None:  # noqa: ANN001
    rt, _, facts = world
    browser.sign_in("emp-aud-1")
    r = browser.post("/console/audit/trace", {"citizen_ref": facts["ref_x"]}, csrf_from="/console/audit")
    assert r.status_code == 200
    assert "Time (Asia/Taipei)" in r.text
    from datetime import timedelta

    first = next(e for e in rt.ledger.entries() if e.event.citizen_ref == facts["ref_x"]).event
    local = (first.time + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")  # Taipei is UTC+8, no DST
    assert f">{local}</time>" in r.text
    assert ">" + first.time.strftime("%Y-%m-%d %H:%M:%S") + "Z<" not in r.text  # UTC only in datetime=""
