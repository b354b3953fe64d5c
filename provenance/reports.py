"""Rendering a trace for an auditor: terminal table, JSON, CSV, and fileable HTML and PDF reports."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Iterator, Sequence
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
RECORDED_BY = "recorded_by"  # the TSA upper bound, when checkpoints are time-stamped


def columns(trace: Trace) -> tuple[str, ...]:
    """The report's columns: COLUMNS, plus ``recorded_by`` when the trace has TSA time bounds."""
    return (*COLUMNS, RECORDED_BY) if trace.time_bounds else COLUMNS


def _bound_text(trace: Trace, seq: int) -> str:
    b = trace.recorded_by(seq)
    return f"≤ {b[1].strftime('%Y-%m-%d %H:%M:%S')}Z (TSA, checkpoint {b[0]})" if b else "no trusted time yet"


def rows(trace: Trace) -> list[dict[str, Any]]:
    out = []
    for t in trace.events:
        e = t.event
        p, r = e.purpose, e.recipient
        row = {
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
        if trace.time_bounds:
            row[RECORDED_BY] = _bound_text(trace, t.seq)
        out.append(row)
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
                **({"recorded_no_later_than": _bound_doc(trace, t.seq)} if trace.time_bounds else {}),
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


def _bound_doc(trace: Trace, seq: int) -> dict[str, Any] | None:
    b = trace.recorded_by(seq)
    return {"time": b[1].isoformat(), "checkpoint_size": b[0], "source": "rfc3161"} if b else None


def to_csv(trace: Trace) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns(trace))
    w.writeheader()
    for r in rows(trace):
        # Neutralise spreadsheet formulas (CSV injection) in free-text cells.
        w.writerow({k: (f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v) for k, v in r.items()})
    return buf.getvalue()


# The template sits beside this module (package data "*.j2"), so wheels and editable installs agree.
_env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html", "j2"]))


def to_html(trace: Trace) -> str:
    return _env.get_template("trace_report.html.j2").render(
        t=trace, c=trace.counts(), rows=rows(trace), headers=columns(trace)
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


@contextlib.contextmanager
def _quiet_font_tools() -> Iterator[None]:
    """fontTools' subsetter logs a warning per table it drops from a system font ("BDF NOT subset;
    don't know how to subset; dropped"): noise on the auditor's terminal, not news. Errors still show."""
    loggers = [logging.getLogger(name) for name in ("fontTools", "fpdf")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


PDF_FONT_SIZES = (7.0, 6.5, 6.0, 5.5, 5.0)  # tried in order until no value has to break inside a word


def _column_widths(pdf: Any, table: list[list[str]], available: float) -> list[float]:
    """Column widths (mm) for ``table`` (header row first) at the smallest font size needed so that
    every word (a run without spaces: an id, a case number, a purpose code) fits on one line of its
    column: cells then wrap only between words. The font size is left set on ``pdf``.

    Space left over goes to the columns whose whole values would not fit on one line, in proportion
    to what they lack. If even the smallest size cannot fit every word, the widths are scaled down
    (a word longer than a page-wide table allows is then broken, the only way to show it).
    """
    pad = 2 * pdf.c_margin + 0.6  # the cell's inner margins and the border
    family = pdf.font_family

    def width(text: str, bold: bool) -> float:  # the header row is set in bold
        pdf.set_font(family, "B" if bold else "", pdf.font_size_pt)
        return float(pdf.get_string_width(text))

    for size in PDF_FONT_SIZES:
        pdf.set_font(family, "", size)
        whole = [0.0] * len(table[0])
        word = [0.0] * len(table[0])
        for n, values in enumerate(table):
            for i, v in enumerate(values):
                whole[i] = max(whole[i], width(v, n == 0) + pad)
                word[i] = max([word[i], *(width(w, n == 0) + pad for w in v.split())])
        if sum(word) <= available:
            break
    pdf.set_font(family, "", size)
    if sum(word) > available:
        return [w * available / sum(word) for w in word]
    if sum(whole) <= available:
        return [w * available / sum(whole) for w in whole]
    lack = [h - w for h, w in zip(whole, word, strict=True)]
    spare = available - sum(word)
    return [w + spare * gap / sum(lack) for w, gap in zip(word, lack, strict=True)]


def _pdf_table(pdf: Any, header: Sequence[str], body: list[list[str]]) -> None:
    widths = _column_widths(pdf, [list(header), *body], pdf.epw)
    with pdf.table(col_widths=widths, width=pdf.epw, text_align="LEFT", line_height=pdf.font_size * 1.45) as table:
        for values in (header, *body):
            row = table.row()
            for v in values:
                row.cell(v)


def to_pdf(trace: Trace, font_path: str | None = None) -> bytes:
    """The trace as a landscape A4 report: every column of :data:`COLUMNS`, words never split."""
    from fpdf import FPDF  # imported lazily: only the PDF report needs it

    with _quiet_font_tools():
        return _to_pdf(FPDF, trace, font_path)


def _to_pdf(fpdf: Any, trace: Trace, font_path: str | None) -> bytes:
    pdf = fpdf(orientation="L", unit="mm", format="A4")
    pdf.set_margins(8, 10, 8)
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
        ("Times", "UTC"),
    ]
    if trace.checkpoint:
        meta.append(("Checkpoint", f"size {trace.checkpoint.size}, root {trace.checkpoint.root.hex()}"))
    for k, v in meta:
        pdf.set_font(family, "B", 9)
        pdf.cell(40, 5, _latin(k))
        pdf.set_font(family, size=9)
        pdf.multi_cell(0, 5, _latin(v), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font(family, size=PDF_FONT_SIZES[0])
    cols = columns(trace)
    _pdf_table(pdf, cols, [[_latin(str(r[col])) for col in cols] for r in rows(trace)])
    if trace.lineage:
        pdf.ln(3)
        pdf.set_font(family, "B", 10)
        pdf.cell(0, 6, "Lineage of disclosures", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=PDF_FONT_SIZES[0])
        body = [[_latin(v) for v in (li.disclosure_id, li.source_id,
                                     "missing" if li.source_seq is None else str(li.source_seq), li.recipient)]
                for li in trace.lineage]
        _pdf_table(pdf, ("disclosure", "derived from", "source seq", "recipient"), body)
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
