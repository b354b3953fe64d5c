"""The lineage picture of a trace: where a citizen's data went, as a static SVG (no script).

Four columns, left to right: the citizen, the reads that disclosures were derived from, the
disclosures, and their recipients. Reads no disclosure used are summarised in one node, so the
picture stays readable for a citizen with thousands of accesses.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from provenance import Trace

COL_X = (20, 230, 470, 710)
NODE_W, NODE_H, GAP = 200, 44, 14
MAX_ROWS = 40  # beyond this the table below the picture is the record; the picture says "+N more"


def _node(x: int, y: int, title: str, sub: str, kind: str) -> str:
    fill = {"citizen": "#e8eefc", "read": "#eef6ee", "disclose": "#fff4e0", "recipient": "#fbe9ec",
            "broken": "#ffffff", "more": "#f3f3f3"}[kind]
    stroke = "#b00020" if kind == "broken" else "#44546a"
    dash = ' stroke-dasharray="4 3"' if kind in ("broken", "more") else ""
    return (f'<g class="node node-{kind}"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}"{dash}/>'
            f'<text x="{x + 8}" y="{y + 18}" font-size="12" font-weight="bold" fill="#1a1a1a">'
            f'{escape(title[:30])}</text>'
            f'<text x="{x + 8}" y="{y + 35}" font-size="11" fill="#333">{escape(sub[:34])}</text></g>')


def _edge(x1: int, y1: int, x2: int, y2: int, broken: bool = False) -> str:
    colour = "#b00020" if broken else "#44546a"
    dash = ' stroke-dasharray="5 4"' if broken else ""
    mid = (x1 + x2) // 2
    return (f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" stroke="{colour}" '
            f'stroke-width="1.5" marker-end="url(#arrow)"{dash}/>')


def lineage_svg(trace: Trace, labels: dict[str, str]) -> str:
    """``labels``: translated captions (title, desc, column heads, other_reads, not_disclosed, broken, more,
    no_disclosures)."""
    by_id = {t.event.event_id: t for t in trace.events}
    disclosures = [t for t in trace.events if t.event.type == "pii.disclose"]
    source_ids: list[str] = []
    for d in disclosures:
        for s in d.event.derived_from:
            if s not in source_ids:
                source_ids.append(s)
    recipients: list[str] = []
    for d in disclosures:
        r = d.event.recipient
        key = f"{r.type}:{r.name or r.id}" if r else "?"
        if key not in recipients:
            recipients.append(key)
    other_reads = sum(1 for t in trace.events if t.event.type.startswith("pii.") and t.event.type != "pii.disclose"
                      and t.event.event_id not in source_ids)
    hidden = max(0, len(source_ids) - MAX_ROWS) + max(0, len(disclosures) - MAX_ROWS)
    source_ids, disclosures, recipients = source_ids[:MAX_ROWS], disclosures[:MAX_ROWS], recipients[:MAX_ROWS]

    def y_of(i: int) -> int:
        return 40 + i * (NODE_H + GAP)

    rows = max(len(source_ids) + (1 if other_reads else 0), len(disclosures), len(recipients), 1)
    height = y_of(rows) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="lineage-title lineage-desc" '
        f'viewBox="0 0 940 {height}" width="100%" class="lineage">',
        f'<title id="lineage-title">{escape(labels["title"])}</title>',
        f'<desc id="lineage-desc">{escape(labels["desc"])}</desc>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#44546a"/></marker></defs>',
    ]
    for x, head in zip(COL_X, (labels["citizen"], labels["reads"], labels["disclosures"], labels["recipients"]),
                       strict=True):
        parts.append(f'<text x="{x}" y="22" font-size="13" font-weight="bold" fill="#1a1a1a">{escape(head)}</text>')
    cy = y_of(0)
    parts.append(_node(COL_X[0], cy, labels["citizen"], trace.citizen_ref[:20] + "…", "citizen"))
    read_y: dict[str, int] = {}
    for i, sid in enumerate(source_ids):
        y = y_of(i)
        read_y[sid] = y
        t = by_id.get(sid)
        if t is None:
            parts.append(_node(COL_X[1], y, labels["broken"], sid[:34], "broken"))
        else:
            e = t.event
            parts.append(_node(COL_X[1], y, f"#{t.seq} {e.type}", f"{e.actor.id} {e.time:%Y-%m-%d %H:%M}", "read"))
            parts.append(_edge(COL_X[0] + NODE_W, cy + NODE_H // 2, COL_X[1], y + NODE_H // 2))
    if other_reads:
        y = y_of(len(source_ids))
        parts.append(_node(COL_X[1], y, labels["other_reads"].format(n=other_reads), labels["not_disclosed"], "more"))
        parts.append(_edge(COL_X[0] + NODE_W, cy + NODE_H // 2, COL_X[1], y + NODE_H // 2))
    for i, d in enumerate(disclosures):
        y = y_of(i)
        e = d.event
        basis = (e.purpose.legal_basis or e.purpose.consent_id or "") if e.purpose else ""
        parts.append(_node(COL_X[2], y, f"#{d.seq} {e.actor.id}", f"{e.time:%Y-%m-%d} {basis}", "disclose"))
        for s in e.derived_from:
            if s in read_y:
                parts.append(_edge(COL_X[1] + NODE_W, read_y[s] + NODE_H // 2, COL_X[2], y + NODE_H // 2,
                                   broken=s not in by_id))
        r = e.recipient
        key = f"{r.type}:{r.name or r.id}" if r else "?"
        if key in recipients:
            ry = y_of(recipients.index(key))
            parts.append(_edge(COL_X[2] + NODE_W, y + NODE_H // 2, COL_X[3], ry + NODE_H // 2))
    if not disclosures:
        parts.append(f'<text x="{COL_X[2]}" y="{cy + NODE_H // 2 + 4}" font-size="12" fill="#333">'
                     f'{escape(labels["no_disclosures"])}</text>')
    for i, key in enumerate(recipients):
        kind, _, name = key.partition(":")
        parts.append(_node(COL_X[3], y_of(i), name or key, kind, "recipient"))
    if hidden:
        parts.append(f'<text x="{COL_X[1]}" y="{height - 6}" font-size="11" fill="#333">'
                     f'{escape(labels["more"].format(n=hidden))}</text>')
    parts.append("</svg>")
    return "".join(parts)
