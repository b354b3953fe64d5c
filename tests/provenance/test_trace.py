"""Trace, lineage, citizen view, exports and reports on a real ledger."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sqlite3
import uuid
import zlib

import pytest
from provenance_testkit import cref, make_event

from contracts import ProvenanceEvent
from provenance import Ledger, reports
from provenance.accesses import citizen_accesses
from provenance.export import to_openlineage, to_prov_json
from provenance.reports import COLUMNS, render, to_csv, to_html
from provenance.trace import trace_citizen


@pytest.fixture
def history(ledger: Ledger) -> dict:
    reads = [make_event(i, citizen_ref=cref(0)) for i in range(3)]
    disclose = make_event(
        7,
        citizen_ref=cref(0),
        type="pii.disclose",
        recipient={"type": "mydata", "id": "bank-042", "name": '=HYPERLINK("x")', "channel": "MyData"},
        purpose={"code": "loan-application", "consent_id": "consent-1"},
        derived_from=[reads[2].event_id, "never-recorded-event"],
    )
    ledger.append([*reads, make_event(1), disclose])
    return {"reads": reads, "disclose": disclose}


def test_trace_verifies_each_event_and_links_lineage(ledger: Ledger, history: dict) -> None:
    cp = ledger.checkpoint()
    tr = trace_citizen(ledger, cref(0), checkpoint=cp, auditor="aud-1")
    assert [t.seq for t in tr.events] == [0, 1, 2, 4]
    assert tr.all_verified and tr.counts() == {"events": 4, "verified": 4, "not_verified": 0, "pending": 0}
    links = {(li.source_id, li.source_seq) for li in tr.lineage}
    assert links == {(history["reads"][2].event_id, 2), ("never-recorded-event", None)}


def test_events_after_checkpoint_are_pending(ledger: Ledger, history: dict) -> None:
    ledger.checkpoint()
    ledger.append([make_event(9, citizen_ref=cref(0))])
    tr = trace_citizen(ledger, cref(0))
    assert [t.status for t in tr.events][-1] == "pending" and not tr.all_verified


def test_tampered_event_is_not_verified(ledger: Ledger, history: dict, ledger_path) -> None:  # noqa: ANN001
    ledger.checkpoint()
    db = sqlite3.connect(ledger_path, isolation_level=None)
    body = db.execute("SELECT body FROM entries WHERE seq = 1").fetchone()[0]
    db.execute("UPDATE entries SET body = ? WHERE seq = 1", (bytes(body).replace(b"rec-1", b"rec-X"),))
    db.close()
    tr = trace_citizen(ledger, cref(0))
    assert [t.verified for t in tr.events] == [True, False, True, True]
    assert "inclusion proof failed" in tr.events[1].problem


def test_citizen_view_policy_can_show_staff(ledger: Ledger, history: dict) -> None:
    shown = citizen_accesses(ledger, cref(0), show_staff=lambda a: a.agency == "BLI")
    assert all(a.staff and a.staff.startswith("staff-") for a in shown)
    hidden = citizen_accesses(ledger, cref(0))
    assert all(a.staff is None for a in hidden) and len(hidden) == 4
    assert hidden[0].recipient == '=HYPERLINK("x")' and hidden[0].consent_id == "consent-1"  # newest first


def test_openlineage_run_ids_are_uuids(ledger: Ledger, history: dict) -> None:
    tr = trace_citizen(ledger, cref(0), checkpoint=ledger.checkpoint())
    runs = to_openlineage(tr)
    for r in runs:
        uuid.UUID(r["run"]["runId"])
        assert r["schemaURL"].startswith("https://openlineage.io/spec/")
        assert r["inputs"] == [{"namespace": "ztcp://datasets", "name": "insured_persons"}]
    facet = runs[-1]["run"]["facets"]["ztcp_provenance"]
    assert facet["derived_from"][0] == runs[2]["run"]["runId"] and facet["verified"] is True
    json.dumps(runs)


def test_prov_json_has_no_nulls_and_links(ledger: Ledger, history: dict) -> None:
    doc = to_prov_json(trace_citizen(ledger, cref(0)))
    assert "null" not in json.dumps(doc)
    d = history["disclose"].event_id
    gen = list(doc["wasGeneratedBy"].values())
    assert {"prov:entity": f"ztcp:disclosure/{d}", "prov:activity": f"ztcp:event/{d}"} in gen
    assert any(v["prov:usedEntity"].startswith("ztcp:record/insured_persons/") for v in doc["wasDerivedFrom"].values())


def test_reports_neutralise_injection(ledger: Ledger, history: dict) -> None:
    tr = trace_citizen(ledger, cref(0), checkpoint=ledger.checkpoint())
    assert list(csv.DictReader(io.StringIO(to_csv(tr))))[-1]["recipient"] == 'mydata:=HYPERLINK("x")'
    ledger.append([make_event(4, citizen_ref=cref(0), purpose={"code": "=1+2"})])
    rows = list(csv.DictReader(io.StringIO(to_csv(trace_citizen(ledger, cref(0))))))
    assert rows[-1]["purpose"] == "'=1+2"  # a formula is neutralised for spreadsheets
    evil = make_event(3, citizen_ref=cref(0), actor={"id": "x", "unit": "<script>alert(1)</script>"})
    ledger.append([evil])
    html = to_html(trace_citizen(ledger, cref(0), checkpoint=ledger.checkpoint()))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_render_formats(ledger: Ledger, history: dict) -> None:
    tr = trace_citizen(ledger, cref(0), checkpoint=ledger.checkpoint())
    assert json.loads(render(tr, "json"))["counts"]["events"] == 4
    assert render(tr, "pdf").startswith(b"%PDF-")
    with pytest.raises(ValueError, match="unknown format"):
        render(tr, "docx")


def test_pdf_handles_non_latin_unit_names(ledger: Ledger) -> None:
    ledger.append(
        [ProvenanceEvent(type="pii.read", actor={"id": "s1", "unit": "勞工保險局 台北辦事處"}, citizen_ref=cref(2))]
    )
    assert render(trace_citizen(ledger, cref(2), checkpoint=ledger.checkpoint()), "pdf").startswith(b"%PDF-")


def _pdf_lines(pdf: bytes) -> list[str]:
    """The text lines a core-font (Latin-1) PDF draws: each ``(…) Tj`` string of its content streams."""
    out = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            text = zlib.decompress(stream)
        except zlib.error:
            continue
        out += [s.decode("latin-1").replace("\\(", "(").replace("\\)", ")")
                for s in re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj", text)]
    return out


def test_pdf_shows_every_column_and_never_splits_a_word(ledger: Ledger, monkeypatch) -> None:  # noqa: ANN001
    """The PDF once dropped decision and effect and broke "inter_agency_exchange" and case numbers mid-word."""
    monkeypatch.setattr(reports, "PDF_FONTS", ())  # core fonts: the drawn text is readable in the stream
    decision = "01a241a2-a25f-7446-bfbe-00c57d464b4b"
    ledger.append([make_event(i, citizen_ref=cref(0), decision_id=decision, effect="step_up",
                              fields=["name", "address", "insurance_type", "insured_salary", "bank_account"],
                              purpose={"code": "inter_agency_exchange", "case_id": "C-2026-000001",
                                       "legal_basis": "TCA-Art-30"}) for i in range(3)])
    pdf = render(trace_citizen(ledger, cref(0), checkpoint=ledger.checkpoint()), "pdf")
    lines = _pdf_lines(pdf)
    words = {w for line in lines for w in line.split()}
    assert set(COLUMNS) <= words, "|".join(lines)  # every column, its header unbroken  # every column has its header
    for whole in (decision, "step_up", "inter_agency_exchange", "C-2026-000001", "TCA-Art-30", "insured_salary,",
                  "counter-app", "staff-0000"):
        assert whole in words, (whole, lines)


def test_pdf_says_nothing_on_stderr(ledger: Ledger, caplog) -> None:  # noqa: ANN001
    """fontTools' subsetter used to log "BDF NOT subset; don't know how to subset; dropped" per report."""
    ledger.append([ProvenanceEvent(type="pii.read", actor={"id": "s1", "unit": "勞工保險局 台北辦事處"},
                                   citizen_ref=cref(2))])
    with caplog.at_level(logging.DEBUG):
        assert render(trace_citizen(ledger, cref(2), checkpoint=ledger.checkpoint()), "pdf").startswith(b"%PDF-")
    noisy = [r for r in caplog.records if r.name.split(".")[0] in ("fontTools", "fpdf") and r.levelno >= logging.INFO]
    assert not noisy, [r.getMessage() for r in noisy]
