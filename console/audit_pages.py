"""Auditor pages: search a citizen (national ID in the POST body, never the URL), the traced
timeline with proof status, the lineage SVG, and CSV / PDF exports (provenance's own reports).

Each view is recorded first (``audit.trace`` / ``audit.export`` naming the auditor, as
``ztcp audit trace`` does); if the ledger cannot record it, nothing is shown.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from markupsafe import Markup

import contracts
import provenance
from console import guard
from console.lineage import lineage_svg
from console.sessions import Session
from console.soc_pages import open_alert_about
from console.web import Console, Ctx, PageError
from contracts.national_id import CITIZEN_REF_PATTERN
from provenance import reports

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
MAX_ROWS_SHOWN = 1000  # the newest; proofs still cover every event, and the exports hold them all


def _day(value: str, tz: str, *, end: bool) -> datetime | None:
    if not value:
        return None
    try:
        d = date.fromisoformat(value)
    except ValueError:
        raise PageError(400, "audit.bad_date") from None
    if end:  # an "until" date includes that whole day
        d += timedelta(days=1)
    return datetime.combine(d, time.min, tzinfo=ZoneInfo(tz))


def _citizen(console: Console, form: dict[str, str]) -> str:
    nid, ref = form.get("national_id", ""), form.get("citizen_ref", "")
    if bool(nid) == bool(ref):
        raise PageError(400, "audit.one_of")
    if ref:
        if not re.fullmatch(CITIZEN_REF_PATTERN, ref):
            raise PageError(400, "audit.bad_ref")
        return ref
    try:
        return contracts.citizen_ref(nid, console.runtime.keys.blind_index)
    except contracts.InvalidNationalId:
        raise PageError(400, "audit.bad_national_id") from None  # the value itself is never echoed


def _record(console: Console, ctx: Ctx, s: Session, kind: str, ref: str, query: str,
            alert_id: str | None = None) -> None:
    event = contracts.ProvenanceEvent.model_validate({
        "type": kind,
        # An auditor's query is an auditor's; a SOC analyst tracing from an alert is staff.
        "actor": {"id": s.subject, "type": "auditor" if "auditor" in s.roles else "staff", "roles": list(s.roles),
               "unit": s.org_unit},
        "via": {"system": "ztcp-console", "channel": "console", "ip": console.client_ip(ctx.request)},
        "citizen_ref": ref,
        "query": query,
        # A SOC analyst's reason to look, named in the record: the alert under investigation.
        "purpose": {"code": "alert_investigation", "case_id": alert_id} if alert_id else None,
    })
    console.runtime.recorder.record(event)  # durable before anything is shown; raises if it cannot be


def _trace(console: Console, ctx: Ctx, form: dict[str, str], kind: str, what: str):  # noqa: ANN202
    ref = _citizen(console, form)
    tz = console.runtime.settings.timezone
    since, until = _day(form.get("since", ""), tz, end=False), _day(form.get("until", ""), tz, end=True)
    page = guard.EXPORT if kind == "audit.export" else guard.TRACE
    s = console.require(ctx, page, citizen_ref=ref)
    alert_id = None
    if "auditor" not in s.roles:
        # Need to know: only auditors trace any citizen; anyone else (a SOC analyst) names an alert
        # that is not closed and concerns this citizen, and that alert is recorded as the reason.
        alert_id = form.get("alert_id", "")
        if not re.fullmatch(r"al_[0-9a-f]{4,64}", alert_id) or not open_alert_about(console, alert_id, ref):
            raise PageError(403, "audit.need_alert")
    try:
        _record(console, ctx, s, kind, ref,
                f"console {what} since={form.get('since') or '-'} until={form.get('until') or '-'}"
                + (f" alert={alert_id}" if alert_id else ""), alert_id)
    except provenance.ProvenanceError:
        raise PageError(503, "audit.unrecordable") from None
    ledger = console.runtime.ledger
    # Sign now, so every event (this query included) is provable; if the checkpoint key cannot sign,
    # the latest checkpoint still proves what it covers and newer events show as not yet signed.
    cp = ledger.checkpoint_or_latest()
    return provenance.trace_citizen(ledger, ref, since, until, checkpoint=cp, auditor=s.subject,
                                    time_bounds=_time_bounds(console))


def _time_bounds(console: Console):  # noqa: ANN202 - provenance.timestamp.TimeBounds or None
    """Each event's "recorded no later than", from the TSA's checkpoint stamps (when a TSA is configured)."""
    settings = console.runtime.settings
    if not settings.tsa_ca_file:
        return None
    from provenance.timestamp import TimeBounds, TsaVerifier

    return TimeBounds.load(console.runtime.ledger, settings.timestamps_dir,
                           TsaVerifier.from_pem_file(settings.tsa_ca_file))


def transfers_of(console: Console, tr: provenance.Trace) -> list[dict]:
    """The exchange transfers the traced events belong to, with receipt and time-stamp status from
    the transfer register (the events name the transfer; the register knows what happened since)."""
    seen: dict[str, dict] = {}
    for e in tr.events:
        ex = e.event.exchange
        if ex is None or ex.transfer_id in seen:
            continue
        t = console.runtime.exchange.store.get(ex.transfer_id)
        seen[ex.transfer_id] = {
            "transfer_id": ex.transfer_id, "direction": ex.direction, "agency": ex.agency,
            "agreement_id": ex.agreement_id, "known": t is not None,
            "citizens": t.citizens if t else None,
            "completed_at": datetime.fromtimestamp(t.completed_at, UTC) if t and t.completed_at else None,
            "receipt": (t.receipt_status or "none") if t else "none",
            "timestamp": (t.timestamp_status or "none") if t else "none",
        }
    for x in seen.values():  # catalog keys (tests/console/test_i18n.py lists these prefixes)
        x.update(direction_key=f"transfers.{x['direction']}", receipt_key=f"transfers.receipt_{x['receipt']}",
                 timestamp_key=f"transfers.timestamp_{x['timestamp']}")
    return list(seen.values())


def add_routes(router: APIRouter, console: Console) -> None:
    @router.get("/audit")
    def search(request: Request) -> Response:
        ctx = console.ctx(request)
        console.require(ctx, guard.TRACE)
        return console.render(ctx, "audit_search.html.j2", form={})

    @router.post("/audit/trace")
    async def trace(request: Request) -> Response:
        ctx = console.ctx(request)
        form = await console.form(request)
        console.check_csrf(ctx, form)
        tr = await run_in_threadpool(_trace, console, ctx, form, "audit.trace", "trace")
        t = ctx.t
        labels = {"title": t("lineage.title"), "desc": t("lineage.desc"), "citizen": t("lineage.citizen"),
                  "reads": t("lineage.reads"), "disclosures": t("lineage.disclosures"),
                  "recipients": t("lineage.recipients"), "other_reads": t("lineage.other_reads"),
                  "not_disclosed": t("lineage.not_disclosed"), "broken": t("lineage.broken"),
                  "more": t("lineage.more"), "no_disclosures": t("lineage.no_disclosures")}
        rows = reports.rows(tr)
        transfers = await run_in_threadpool(transfers_of, console, tr)
        bounds = {e.seq: tr.recorded_by(e.seq) for e in tr.events} if tr.time_bounds else None
        return console.render(
            ctx, "audit_trace.html.j2", trace=tr, rows=rows[-MAX_ROWS_SHOWN:], transfers=transfers, bounds=bounds,
            hidden=max(0, len(rows) - MAX_ROWS_SHOWN), counts=tr.counts(),
            problems={e.seq: e.problem for e in tr.events if e.problem},
            svg=Markup(lineage_svg(tr, labels)),  # noqa: S704 - built from escaped parts in lineage.py
            form={"since": form.get("since", ""), "until": form.get("until", "")})

    @router.post("/audit/export")
    async def export(request: Request) -> Response:
        ctx = console.ctx(request)
        form = await console.form(request)
        console.check_csrf(ctx, form)
        fmt = form.get("format", "")
        if fmt not in EXPORT_TYPES:
            raise PageError(400, "audit.bad_format")
        tr = await run_in_threadpool(_trace, console, ctx, form, "audit.export", f"export {fmt}")
        data = await run_in_threadpool(reports.render, tr, fmt)
        name = f"trace-{tr.citizen_ref[:12]}-{tr.generated_at:%Y%m%dT%H%M%SZ}.{fmt}"
        return console.finish(ctx, Response(data, media_type=EXPORT_TYPES[fmt],
                                            headers={"Content-Disposition": f'attachment; filename="{name}"'}))
