"""Rendering a trace for an auditor: terminal table, JSON, CSV, and fileable HTML and PDF reports."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape

from provenance.trace import Trace

COLUMNS = (
    "seq",
    "time",
    "type",
    "actor",
    "unit",
    "system",
    "fields",
    "purpose",
    "case",
    "legal_basis",
    "decision",
    "effect",
    "recipient",
    "proof",
)
FORMATS = ("table", "json", "csv", "html", "pdf")


def rows(trace: Trace) -> list[dict[str, Any]]:
    out = []
    for t in trace.events:
        e = t.event
        p, r = e.purpose, e.recipient
        out.append(
            {
                "seq": t.seq,
                "time": e.time.strftime("%Y-%m-%d %H:%M:%S") + "Z",
                "type": e.type,
                "actor": e.actor.id,
                "unit": " / ".join(x for x in (e.actor.agency, e.actor.unit) if x),
                "system": e.via.system or "",
                "fields": ", ".join(e.fields),
                "purpose": p.code if p else "",
                "case": (p.case_id or "") if p else "",
                "legal_basis": ((p.legal_basis or p.consent_id or "") if p else ""),
                "decision": e.decision_id or "",
                "effect": e.effect or "",
                "recipient": f"{r.type}:{r.name or r.id}" if r else "",
                "proof": t.status,
            }
        )
    return out


def to_json(trace: Trace) -> bytes:
    cp = trace.checkpoint
    doc = {
        "citizen_ref": trace.citizen_ref,
        "since": trace.since,
        "until": trace.until,
        "generated_at": trace.generated_at,
        "auditor": trace.auditor,
        "counts": trace.counts(),
        "all_verified": trace.all_verified,
        "checkpoint": {"size": cp.size, "root": cp.root.hex(), "note": cp.note, "time": cp.time} if cp else None,
        "events": [
            {
                "seq": t.seq,
                "leaf_hash": t.leaf_hash.hex(),
                "proof": t.status,
                "problem": t.problem,
                "event": t.event.model_dump(mode="json", exclude_none=True),
            }
            for t in trace.events
        ],
        "lineage": [
            {
                "disclosure": li.disclosure_id,
                "derived_from": li.source_id,
                "source_seq": li.source_seq,
                "recipient": li.recipient,
            }
            for li in trace.lineage
        ],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def to_csv(trace: Trace) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for r in rows(trace):
        # Neutralise spreadsheet formulas (CSV injection) in free-text cells.
        w.writerow({k: (f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v) for k, v in r.items()})
    return buf.getvalue()


# The template sits beside this module (package data "*.j2"), so wheels and editable installs agree.
_env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html", "j2"]))


def to_html(trace: Trace) -> str:
    return _env.get_template("trace_report.html.j2").render(
        t=trace, c=trace.counts(), rows=rows(trace), headers=COLUMNS
    )


# Unicode fonts tried in order for the PDF (CJK first: unit and agency names are often Chinese).
# Install fonts-noto-cjk or fonts-wqy-zenhei for Chinese; without any, Latin-1 core fonts are used
# and characters they lack are printed as '?'.
PDF_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _unicode_font(pdf: Any, font_path: str | None) -> bool:
    for path in ([font_path] if font_path else []) + list(PDF_FONTS):
        if path and Path(path).is_file():
            try:
                pdf.add_font("report", "", path)
                pdf.add_font("report", "B", path)
                return True
            except Exception:  # noqa: BLE001, S112 - an unreadable font: try the next one
                continue
    return False


def to_pdf(trace: Trace, font_path: str | None = None) -> bytes:
    from fpdf import FPDF  # imported lazily: only the PDF report needs it

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    unicode_ok = _unicode_font(pdf, font_path)
    family = "report" if unicode_ok else "Helvetica"

    def _latin(s: str) -> str:
        return s if unicode_ok else _latin1(s)

    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font(family, "B", 14)
    pdf.cell(0, 8, "Personal-data access trace", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=9)
    c = trace.counts()
    meta = [
        ("Citizen reference", trace.citizen_ref),
        ("Period", f"{trace.since or 'beginning'} - {trace.until or 'now'}"),
        (
            "Generated",
            f"{trace.generated_at:%Y-%m-%d %H:%M:%S}Z" + (f" by auditor {trace.auditor}" if trace.auditor else ""),
        ),
        (
            "Events",
            f"{c['events']} ({c['verified']} verified, {c['not_verified']} not verified, {c['pending']} pending)",
        ),
        (
            "Integrity",
            "every event proven included in the signed ledger"
            if trace.all_verified
            else "SOME EVENTS COULD NOT BE PROVEN",
        ),
    ]
    if trace.checkpoint:
        meta.append(("Checkpoint", f"size {trace.checkpoint.size}, root {trace.checkpoint.root.hex()}"))
    for k, v in meta:
        pdf.set_font(family, "B", 9)
        pdf.cell(40, 5, _latin(k))
        pdf.set_font(family, size=9)
        pdf.multi_cell(0, 5, _latin(v), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    cols = ("seq", "time", "type", "actor", "unit", "fields", "purpose", "case", "legal_basis", "recipient", "proof")
    widths = (12, 34, 20, 22, 38, 36, 26, 18, 26, 26, 19)
    pdf.set_font(family, size=7)
    with pdf.table(col_widths=widths, text_align="LEFT", line_height=4) as table:
        head = table.row()
        for col in cols:
            head.cell(col)
        for r in rows(trace):
            row = table.row()
            for col in cols:
                row.cell(_latin(str(r[col])))
    if trace.lineage:
        pdf.ln(3)
        pdf.set_font(family, "B", 10)
        pdf.cell(0, 6, "Lineage of disclosures", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=7)
        with pdf.table(col_widths=(70, 70, 20, 60), text_align="LEFT", line_height=4) as table:
            head = table.row()
            for h in ("disclosure", "derived from", "source seq", "recipient"):
                head.cell(h)
            for li in trace.lineage:
                row = table.row()
                for v in (
                    li.disclosure_id,
                    li.source_id,
                    "missing" if li.source_seq is None else str(li.source_seq),
                    li.recipient,
                ):
                    row.cell(_latin(v))
    return bytes(pdf.output())


def _latin1(s: str) -> str:
    # Core PDF fonts are Latin-1; unit names in other scripts are transliterated to '?' rather than failing.
    return s.encode("latin-1", "replace").decode("latin-1")


def render(trace: Trace, fmt: str) -> bytes:
    if fmt == "json":
        return to_json(trace)
    if fmt == "csv":
        return to_csv(trace).encode()
    if fmt == "html":
        return to_html(trace).encode()
    if fmt == "pdf":
        return to_pdf(trace)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
