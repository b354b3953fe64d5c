"""`ztcp audit …`: the auditor's tools over the provenance ledger (docs/design.md, Flows).

``trace`` and ``export`` read a citizen's history (``export --format jsonl``: every citizen's, unless
one is named), so they need an operator token with role ``auditor`` (``ZTCP_TOKEN`` or ``--token
@FILE``) and are themselves recorded (``audit.trace`` / ``audit.export`` naming the auditor) *before*
anything is shown: an unrecordable query is refused.
``verify`` and ``checkpoint`` only touch hashes and signatures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import contracts
import provenance
from cli.errors import EXIT_INTEGRITY, CliFailure
from cli.tables import print_table
from provenance import reports
from provenance.export import to_openlineage, to_prov_json
from provenance.trace import Trace, trace_citizen
from provenance.verify import check_unsigned_tail, verify_ledger
from provenance.witness import CosignatureVerifier, verify_witnessed
from server.ledger import ledger_from_settings
from server.settings import Settings, load_settings

if TYPE_CHECKING:
    from cli.operator import Operator
    from server.bootstrap import SystemKeys

AUDITOR_ROLE = "auditor"


def _when(value: str | None, tz: str, *, end: bool) -> datetime | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            t = datetime.combine(d, time.min)
            if end:  # --until 2026-03-31 includes that whole day
                t = datetime.combine(date.fromordinal(d.toordinal() + 1), time.min)
        else:
            t = datetime.fromisoformat(value)
    except ValueError:
        raise CliFailure(f"{'--until' if end else '--since'} must be an ISO date or date-time") from None
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo(tz))


def _citizen(settings: Settings, keys: SystemKeys | None, national_id: str | None, ref: str | None) -> str:
    if bool(national_id) == bool(ref):
        raise CliFailure("give exactly one of --national-id or --citizen-ref")
    if ref:
        import re

        from contracts.national_id import CITIZEN_REF_PATTERN

        if not re.fullmatch(CITIZEN_REF_PATTERN, ref):
            raise CliFailure("--citizen-ref must be cr_ followed by 52 base32 characters")
        return ref
    if national_id == "-":
        national_id = sys.stdin.readline()
    if keys is None:  # a caller that passes no keys passes a citizen_ref, never a national ID
        raise CliFailure("a national ID needs this installation's keys (ZTCP_HOME)")
    return contracts.citizen_ref(national_id or "", keys.blind_index)


def _record_query(ledger: provenance.Ledger, kind: str, operator: Operator, ref: str | None, query: str) -> None:
    ev = contracts.ProvenanceEvent.model_validate({
        "type": kind,
        "actor": {"id": operator.id, "type": "auditor", "roles": list(operator.roles)},
        "via": {"system": "ztcp-cli", "channel": "cli"},
        "citizen_ref": ref,
        "query": query,
    })
    provenance.Recorder(ledger).record(ev)  # raises LedgerUnavailable → exit 2, nothing shown


def _write(data: bytes, output: str | None) -> None:
    if output:
        # Reports describe who read a citizen's data: private to the auditor (0600 from creation).
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        click.echo(f"wrote {output} ({len(data)} bytes)", err=True)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _table(trace: Trace) -> None:
    console = Console()
    c = trace.counts()
    title = f"{trace.citizen_ref}: {c['events']} events, {c['verified']} verified"
    if trace.checkpoint:
        title += f" against checkpoint {trace.checkpoint.size}"
    table = Table(title=title, show_lines=False)
    for col in reports.columns(trace):
        table.add_column(col, overflow="fold")
    for r in reports.rows(trace):
        style = None if r["proof"] == "verified" else "bold red" if r["proof"] == "NOT VERIFIED" else "yellow"
        table.add_row(*(str(r[col]) for col in reports.columns(trace)), style=style)
    print_table(table, console)
    if trace.lineage:
        lt = Table(title="lineage of disclosures")
        for col in ("disclosure", "derived from", "source seq", "recipient"):
            lt.add_column(col)
        for li in trace.lineage:
            lt.add_row(
                li.disclosure_id, li.source_id, "missing" if li.source_seq is None else str(li.source_seq), li.recipient
            )
        print_table(lt, console)


def _traced(
    settings: Settings,
    token: str | None,
    kind: str,
    national_id: str | None,
    citizen_ref: str | None,
    since: str | None,
    until: str | None,
    what: str,
) -> tuple[Trace, provenance.Ledger]:
    from cli.operator import current_operator
    from server.bootstrap import system_keys

    operator = current_operator(settings, token, AUDITOR_ROLE)
    keys = system_keys(settings)
    ref = _citizen(settings, keys, national_id, citizen_ref)
    lo, hi = _when(since, settings.timezone, end=False), _when(until, settings.timezone, end=True)
    ledger = ledger_from_settings(settings, keys)
    _record_query(ledger, kind, operator, ref, f"{what} since={since or '-'} until={until or '-'}")
    # Sign the tree now so every event, this query included, is provable. If the checkpoint key
    # cannot sign (key server down), prove against the latest checkpoint and say why.
    cp = ledger.checkpoint_or_latest()
    if ledger.checkpoint_error:
        click.echo(f"ztcp: warning: no fresh checkpoint ({ledger.checkpoint_error}); events after "
                   f"size {cp.size if cp else 0} show as not yet signed", err=True)
    bounds = None
    if settings.tsa_ca_file:  # each event's "recorded no later than", from the TSA's checkpoint stamps
        from provenance.timestamp import TimeBounds, TsaVerifier

        bounds = TimeBounds.load(ledger, settings.timestamps_dir, TsaVerifier.from_pem_file(settings.tsa_ca_file))
    return trace_citizen(ledger, ref, lo, hi, checkpoint=cp, auditor=operator.id,
                         time_bounds=bounds), ledger


@click.group("audit")
def command() -> None:
    """Trace a citizen's data-access history, verify the ledger, publish checkpoints, export lineage."""


_token = click.option("--token", default=None, help="operator token (@FILE or - for stdin; default ZTCP_TOKEN)")
_who = [
    click.option("--national-id", default=None, help="the citizen's national ID (- reads it from stdin)"),
    click.option("--citizen-ref", default=None, help="the citizen reference (cr_…) instead of the ID"),
    click.option("--since", default=None, help="from this ISO date/date-time (local time zone if none)"),
    click.option("--until", default=None, help="up to this ISO date (inclusive) or date-time (exclusive)"),
]


def _apply(opts):  # noqa: ANN001, ANN202
    def deco(f):  # noqa: ANN001, ANN202
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


@command.command("trace")
@_apply(_who)
@click.option("--format", "fmt", type=click.Choice(reports.FORMATS), default="table", show_default=True)
@click.option("-o", "--output", default=None, help="write the report to FILE (needed for pdf on a terminal)")
@click.option("--json", "as_json", is_flag=True, help="shorthand for --format json")
@_token
def trace(national_id, citizen_ref, since, until, fmt, output, as_json, token) -> None:  # noqa: ANN001, PLR0913
    """A citizen's whole history with each event's inclusion proof checked against the signed checkpoint.

    Exit 3 if any event cannot be proven included in the signed ledger.
    """
    settings = load_settings()
    fmt = "json" if as_json else fmt
    if fmt == "pdf" and not output and sys.stdout.isatty():
        raise CliFailure("a PDF report needs -o FILE")
    tr, ledger = _traced(settings, token, "audit.trace", national_id, citizen_ref, since, until, f"trace {fmt}")
    try:
        if fmt == "table" and not output:
            _table(tr)
        else:
            _write(reports.render(tr, fmt), output)
    finally:
        ledger.close()
    if not tr.all_verified:
        bad = [t.seq for t in tr.events if t.verified is False]
        raise (
            CliFailure(
                f"{len(bad)} event(s) failed their inclusion proof (first seq {bad[0]}); run `ztcp audit verify`",
                EXIT_INTEGRITY,
            )
            if bad
            else CliFailure("some events are not covered by a signed checkpoint", EXIT_INTEGRITY)
        )


@command.command("verify")
@click.option("--full", is_flag=True, help="also re-validate and re-canonicalise every stored event")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
@click.option(
    "--published",
    "published",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="a checkpoint note published earlier (`ztcp audit checkpoint > FILE`), or a directory of them "
         "(ZTCP_CHECKPOINT_PUBLISH_DIR); repeatable",
)
@click.option("--witness-key", "witness_keys", multiple=True,
              help="a witness's key (ztcp witness key): every cosignature it gave must match the ledger; repeatable")
@click.option("--witnessed", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="where the witnesses' cosignatures are kept (default: ZTCP_HOME/witnessed)")
@click.option("--all", "every_log", is_flag=True,
              help="check every log: the ledger, the decision log, the key audit and the alert history")
def verify(full: bool, as_json: bool, published: tuple[Path, ...], witness_keys: tuple[str, ...],
           witnessed: Path | None, every_log: bool) -> None:
    """Recompute the Merkle tree from every event, check every checkpoint signature and their consistency.

    Exit 0 if intact; exit 3 naming the first bad sequence number and what is wrong. With ``--all``,
    every log's hash chain, prune marks and signed heads too: one line per log, exit 3 naming the
    first bad record (log and position) if any log fails.
    """
    settings = load_settings()
    if every_log:
        _verify_all(settings, full, as_json)
        return
    ledger = ledger_from_settings(settings)
    try:
        # A ledger in PostgreSQL may hold acknowledged events the integrator has not reached yet:
        # bring them into the tree first (here, if no `ztcp serve` is integrating), so they are verified.
        if not ledger.integrate_pending():
            click.echo("warning: some acknowledged events are not in the tree yet (the integrator is behind); "
                       "they are not verified by this run", err=True)
        show = sys.stderr.isatty() and not as_json
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not show,
        ) as progress:
            task = progress.add_task("verify", total=ledger.size)
            try:
                report = verify_ledger(
                    ledger,
                    full=full,
                    progress=lambda done, total: progress.update(task, completed=done),
                    published=provenance.published_notes(list(published)),
                )
                check_unsigned_tail(ledger, report, settings.checkpoint_unsigned_max_age_seconds)
                if witness_keys:
                    verify_witnessed(ledger.root, report.size, ledger.origin, witnessed or settings.witnessed_dir,
                                     [CosignatureVerifier.from_vkey(k) for k in witness_keys])
                stamps = _verify_stamps(settings, ledger)
            except provenance.IntegrityError as exc:
                if as_json:
                    click.echo(orjson.dumps({"ok": False, "seq": exc.seq, "kind": exc.kind, "error": str(exc)}))
                hint = ""
                moved = settings.checkpoint_in_vault and not settings.checkpoint_trust_local
                if exc.kind == "forged-checkpoint" and moved:
                    hint = ("; if this ledger was signed with the local key before checkpoints moved to Vault, "
                            "set ZTCP_CHECKPOINT_TRUST_LOCAL=true")
                raise CliFailure(
                    (f"ledger integrity failure ({exc.kind}) at seq {exc.seq}: {exc}"
                     if exc.seq is not None
                     else f"ledger integrity failure ({exc.kind}): {exc}") + hint,
                    EXIT_INTEGRITY,
                ) from None
    finally:
        ledger.close()
    if as_json:
        doc = report.as_dict()
        if stamps is not None:
            doc["timestamps"] = stamps.as_dict()
        click.echo(orjson.dumps(doc))
    else:
        click.echo(
            f"ok: {report.size} events, {report.checkpoints} checkpoints verified "
            f"(latest signs {report.latest_checkpoint_size}; {report.unsigned_tail} newer events not yet signed)"
        )
        if stamps is not None:
            when = stamps.latest_time.isoformat() if stamps.latest_time else "never"
            click.echo(f"trusted time: {stamps.stamped} of {stamps.checkpoints} checkpoints time-stamped by the TSA "
                       f"(latest: size {stamps.latest_size} at {when}); {stamps.untimed_events} newer events have "
                       "no trusted time yet"
                       + (f"; gap: {len(stamps.unstamped)} checkpoints without a token" if stamps.unstamped else ""))


def _verify_all(settings: Settings, full: bool, as_json: bool) -> None:
    from server.log_integrity import verify_all

    verdicts = verify_all(settings, full=full)
    if as_json:
        click.echo(orjson.dumps({"ok": all(v.ok for v in verdicts), "logs": [v.as_dict() for v in verdicts]}))
    else:
        for v in verdicts:
            if v.ok:
                extra = f", {v.pruned} pruned" if v.pruned else ""
                click.echo(f"ok: {v.log}: {v.checked} records{extra}, {v.heads} signed heads/checkpoints")
            else:
                click.echo(f"FAILED: {v.log}: record {v.failure.position}: {v.failure.reason}")  # type: ignore[union-attr]
    bad = next((v for v in verdicts if not v.ok), None)
    if bad is not None:
        raise CliFailure(f"{bad.log} integrity failure at record {bad.failure.position}: "  # type: ignore[union-attr]
                         f"{bad.failure.reason}", EXIT_INTEGRITY)  # type: ignore[union-attr]


def _verify_stamps(settings: Settings, ledger: provenance.Ledger):  # noqa: ANN202 - a StampReport or None
    """With a TSA trust anchor configured, every stored checkpoint token must verify (exit 3 if one does not)."""
    if not settings.tsa_ca_file:
        return None
    from provenance.timestamp import TsaVerifier, verify_stamps

    return verify_stamps(ledger, settings.timestamps_dir, TsaVerifier.from_pem_file(settings.tsa_ca_file))


@command.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="checkpoint fields and the verifier key as JSON")
def checkpoint(as_json: bool) -> None:
    """Sign the current tree if it grew, and print the latest signed checkpoint (C2SP signed note)."""
    settings = load_settings()
    ledger = ledger_from_settings(settings)
    try:
        cp = ledger.checkpoint()
        vkey = ledger.signer.verifier_key
    finally:
        ledger.close()
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "origin": cp.checkpoint.origin,
                    "size": cp.size,
                    "root": cp.root.hex(),
                    "time": cp.time.isoformat(),
                    "note": cp.note,
                    "verifier_key": vkey,
                }
            )
        )
    else:
        click.echo(cp.note, nl=False)


def _export_jsonl(settings: Settings, token: str | None, national_id: str | None, citizen_ref: str | None,
                  since: str | None, until: str | None, output: str | None) -> None:
    """Ledger entries, one per line: the event as the ledger stores it plus ``seq`` and ``leaf_hash``
    (what the SIEM's live feed reads; ``ztcp siem run --events FILE`` takes the file as it is)."""
    from cli.operator import current_operator
    from server.bootstrap import system_keys

    operator = current_operator(settings, token, AUDITOR_ROLE)
    keys = system_keys(settings)
    ref = _citizen(settings, keys, national_id, citizen_ref) if (national_id or citizen_ref) else None
    lo, hi = _when(since, settings.timezone, end=False), _when(until, settings.timezone, end=True)
    ledger = ledger_from_settings(settings, keys)
    try:
        scope = "one citizen" if ref else "all citizens"
        _record_query(ledger, "audit.export", operator, ref,
                      f"export jsonl {scope} since={since or '-'} until={until or '-'}")
        ledger.checkpoint_or_latest()  # as for every export: the entries, this one included, are provable
        if ledger.checkpoint_error:
            click.echo(f"ztcp: warning: no fresh checkpoint ({ledger.checkpoint_error})", err=True)
        if ref is not None:
            docs = (e.document() for e in ledger.citizen_entries(ref, lo, hi))
        else:
            docs = (d for d in (e.document() for e in ledger.entries()) if _within(d["time"], lo, hi))
        count = _write_lines((orjson.dumps(d) + b"\n" for d in docs), output)
    finally:
        ledger.close()
    if output:
        click.echo(f"wrote {output} ({count} ledger entries)", err=True)


def _within(time_text: str, lo: datetime | None, hi: datetime | None) -> bool:
    if lo is None and hi is None:
        return True
    t = datetime.fromisoformat(time_text)
    return (lo is None or t >= lo) and (hi is None or t < hi)


def _write_lines(lines: Iterator[bytes], output: str | None) -> int:
    """Stream ``lines`` to FILE (0600 from creation, like every report) or standard output."""
    count = 0
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            for line in lines:
                f.write(line)
                count += 1
    else:
        for line in lines:
            sys.stdout.buffer.write(line)
            count += 1
        sys.stdout.flush()
    return count


@command.command("export")
@click.option("--format", "fmt", type=click.Choice(["openlineage", "prov-json", "jsonl"]), required=True,
              help="openlineage / prov-json: one citizen's lineage; jsonl: ledger entries (the SIEM's input)")
@_apply(_who)
@click.option("-o", "--output", default=None, help="write to FILE instead of standard output")
@_token
def export(fmt, national_id, citizen_ref, since, until, output, token) -> None:  # noqa: ANN001, PLR0913
    """Export a citizen's lineage as OpenLineage run events (JSON lines) or W3C PROV-JSON; or ledger
    entries as JSON lines (``jsonl``: every citizen's unless one is named), which ``ztcp siem run
    --events`` reads as they are. Each export is recorded (``audit.export``) before anything is written.
    """
    settings = load_settings()
    if fmt == "jsonl":
        _export_jsonl(settings, token, national_id, citizen_ref, since, until, output)
        return
    tr, ledger = _traced(settings, token, "audit.export", national_id, citizen_ref, since, until, f"export {fmt}")
    ledger.close()
    if fmt == "openlineage":
        data = b"".join(orjson.dumps(e) + b"\n" for e in to_openlineage(tr))
    else:
        data = orjson.dumps(to_prov_json(tr), option=orjson.OPT_INDENT_2)
    _write(data, output)
