"""`ztcp logs …`: retention of every store, legal holds, and the ledger's sealed archives.

``retention`` shows what retention would delete (``--apply`` deletes it; the scheduler does this on
the leader every ZTCP_RETENTION_INTERVAL_HOURS). ``hold add|list|release`` manage legal holds: adding
or releasing one needs an operator token with role ``auditor``. ``archive``, ``verify`` and
``restore`` handle the ledger's archive segments (the ledger itself is never deleted).
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.table import Table

from cli.errors import EXIT_DENIED, CliFailure
from cli.operator import current_operator, token_option
from cli.tables import print_table
from server.settings import load_settings

AUDITOR_ROLE = "auditor"


@click.group("logs")
def command() -> None:
    """Retention, legal holds and ledger archives."""


@command.command("retention")
@click.option("--apply", "apply", is_flag=True, help="delete what the retention settings say (default: dry run)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
def retention(apply: bool, as_json: bool) -> None:
    """Per store: its retention (ZTCP_RETENTION_*_DAYS), what goes, what a legal hold keeps.

    Exit 2 if the holds cannot be read or a store's retention is refused because it could delete
    what a hold protects; nothing is deleted from that store."""
    from server.retention import run_retention

    settings = load_settings()
    report = run_retention(settings, apply=apply)
    if as_json:
        click.echo(orjson.dumps(report.as_dict()))
    else:
        table = Table(title=f"retention ({'applied' if apply else 'dry run: nothing deleted'}; "
                            f"{report.holds} active hold(s))")
        for col in ("store", "days", "older than", "deleted" if apply else "would delete", "kept by hold", "status"):
            table.add_column(col)
        for s in report.stores:
            d = s.as_dict()
            table.add_row(s.store, str(s.days or "forever"), (d["before"] or "-")[:19], str(s.deleted),
                          str(s.kept_by_hold), s.status)
        print_table(table, Console(highlight=False))
    refused = [s.store for s in report.stores if s.status == "refused"]
    if refused:
        raise CliFailure(f"retention refused for {', '.join(refused)}: it could delete what a legal hold "
                         "protects", EXIT_DENIED)
    failed = [s.store for s in report.stores if s.status == "failed"]
    if failed:
        raise CliFailure(f"retention failed for {', '.join(failed)} (see the log)", 1)


@command.group("hold")
def hold() -> None:
    """Legal holds on a citizen or a case: what they concern is never deleted by retention."""


def _subject(national_id: str | None, citizen_ref: str | None, case: str | None) -> tuple[str, str]:
    if sum(x is not None for x in (national_id, citizen_ref, case)) != 1:
        raise CliFailure("give exactly one of --national-id, --citizen-ref or --case")
    if case is not None:
        return "case", case
    from cli.cmd_audit import _citizen
    from server.bootstrap import system_keys

    settings = load_settings()
    keys = system_keys(settings) if national_id else None
    return "citizen", _citizen(settings, keys, national_id, citizen_ref)


@hold.command("add")
@click.option("--national-id", default=None, help="the citizen's national ID, or - to read it from stdin "
              "(stored only as its citizen_ref)")
@click.option("--citizen-ref", default=None, help="the citizen's reference (cr_…)")
@click.option("--case", default=None, help="a case id")
@click.option("--reason", required=True, help="why (e.g. the court order's reference); no personal data")
@token_option
@click.option("--json", "as_json", is_flag=True)
def hold_add(national_id: str | None, citizen_ref: str | None, case: str | None, reason: str,
             token: str | None, as_json: bool) -> None:
    """Place a hold (needs role auditor)."""
    from server.holds import hold_store

    settings = load_settings()
    operator = current_operator(settings, token, AUDITOR_ROLE)
    kind, subject = _subject(national_id, citizen_ref, case)
    h = hold_store(settings).add(kind, subject, reason, operator.id)
    click.echo(orjson.dumps(h.as_dict()) if as_json else f"hold {h.hold_id} placed on {kind} {subject}")


@hold.command("list")
@click.option("--all", "show_all", is_flag=True, help="released holds too")
@click.option("--json", "as_json", is_flag=True)
def hold_list(show_all: bool, as_json: bool) -> None:
    """The holds (active ones unless --all)."""
    from server.holds import hold_store

    holds = hold_store(load_settings()).list(active_only=not show_all)
    if as_json:
        click.echo(orjson.dumps([h.as_dict() for h in holds]))
        return
    table = Table(title=f"{len(holds)} hold(s)")
    for col in ("id", "kind", "subject", "reason", "placed by", "status"):
        table.add_column(col, overflow="fold")
    for h in holds:
        table.add_row(h.hold_id, h.kind, h.subject, h.reason, h.placed_by,
                      "active" if h.active else f"released by {h.released_by}")
    print_table(table, Console(highlight=False))


@hold.command("release")
@click.argument("hold_id")
@token_option
def hold_release(hold_id: str, token: str | None) -> None:
    """Release a hold (needs role auditor); its record stays."""
    from server.holds import hold_store

    settings = load_settings()
    operator = current_operator(settings, token, AUDITOR_ROLE)
    h = hold_store(settings).release(hold_id, operator.id)
    click.echo(f"hold {h.hold_id} on {h.kind} {h.subject} released")


@command.command("archive")
@click.option("--before", default=None, help="archive up to the newest checkpoint signed before this ISO date "
              "(default: the newest checkpoint)")
@click.option("--segment-events", type=click.IntRange(1000, 10_000_000), default=100_000, show_default=True)
def archive(before: str | None, segment_events: int) -> None:
    """Copy old ledger ranges into sealed (AES-256-GCM), compressed segments with the checkpoint covering
    them, in ZTCP_ARCHIVE_DIR. The ledger itself is never deleted."""
    from datetime import UTC, datetime

    from server.archives import archive_dir, archive_ledger

    when = None
    if before:
        try:
            when = datetime.fromisoformat(before)
        except ValueError:
            raise CliFailure("--before must be an ISO date or date-time") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    run = archive_ledger(load_settings(), before=when, segment_events=segment_events)
    if not run.written:
        click.echo(f"nothing to archive: seq {run.start} onwards has no newer signed checkpoint yet")
        return
    click.echo(f"archived seq {run.start}..{run.end - 1} ({run.events} events) into {len(run.written)} sealed "
               f"segment(s), {run.bytes} bytes, in {archive_dir(load_settings())}")


@command.command("verify")
@click.option("--offline", is_flag=True, help="the archives alone (no live ledger to compare with)")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the archive directory (default: ZTCP_ARCHIVE_DIR)")
@click.option("--json", "as_json", is_flag=True)
def verify(offline: bool, directory: Path | None, as_json: bool) -> None:
    """Prove every segment intact and that no event is missing between the archives and the live ledger
    (sequence continuity, Merkle roots against the signed checkpoints). Exit 3 naming a bad segment."""
    from server.archives import verify_archive

    report = verify_archive(load_settings(), offline=offline, directory=directory)
    if as_json:
        click.echo(orjson.dumps(report.as_dict()))
        return
    live = "; the live ledger continues them" if report.live_checked else ""
    click.echo(f"ok: {report.segments} segment(s), seq 0..{report.end - 1}, {report.events} events, "
               f"{report.checkpoints} checkpoint(s) verified{live}" if report.segments else "ok: no archive segments")


@command.command("restore")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="a new file (0600) for the archived events, one JSON document per line")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the archive directory (default: ZTCP_ARCHIVE_DIR)")
def restore(output: Path, directory: Path | None) -> None:
    """Verify the archives offline, then write their events out (as `ztcp audit export --format jsonl`)."""
    from server.archives import restore_archive

    if output.exists():
        raise CliFailure(f"{output} exists: restore writes a new file")
    n = restore_archive(load_settings(), output, directory=directory)
    click.echo(f"restored {n} events to {output}")
