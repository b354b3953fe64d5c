"""`ztcp demo seed`: a synthetic bureau, a simulated week through the gateway, the SIEM, a summary.
`ztcp demo early-warning`: behavioural baselines and fraud indicators, and the SOC's alert email."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.errors import EXIT_INPUT, EXIT_INTEGRITY, CliFailure
from cli.tables import print_table
from demo.seed import MAX_CITIZENS, MAX_DAYS, Phases
from server.settings import load_settings


class _Count(click.ParamType):
    """An integer in a range. A bad value is an input error (exit 1, cli/errors.py), not click's usage exit 2."""

    name = "integer"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        flag = max(param.opts, key=len) if param is not None and param.opts else "value"
        try:
            number = int(str(value).strip(), 10)
        except ValueError:
            raise CliFailure(f"{flag} must be a whole number (got {str(value)[:20]!r})", EXIT_INPUT) from None
        if not self.lo <= number <= self.hi:
            raise CliFailure(f"{flag} must be between {self.lo} and {self.hi} (got {number})", EXIT_INPUT)
        return number


class _SeedCommand(click.Command):
    """Usage mistakes (unknown flag, missing value) exit 1 like every other input error here."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise CliFailure(f"{exc.format_message()} (see: ztcp demo seed --help)", EXIT_INPUT) from None


class _RichPhases(Phases):
    """One progress bar per phase (on stderr, so --json output stays clean)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def phase(self, name: str, total: int | None) -> Callable[[int], None]:
        task = self.progress.add_task(name, total=total)
        self.tasks[name] = task
        return lambda n: self.progress.advance(task, n)

    def done(self, name: str) -> None:
        task = self.tasks.get(name)
        if task is not None:
            t = self.progress.tasks[task]
            self.progress.update(task, total=t.total or t.completed or 1, completed=t.total or t.completed or 1)


@click.group(name="demo")
def command() -> None:
    """A synthetic bureau to explore ztcp with (never use on a production home)."""


@command.command("seed", cls=_SeedCommand)
@click.option("--citizens", type=_Count(50, MAX_CITIZENS), default=2000, show_default=True,
              help=f"insured people to create (50–{MAX_CITIZENS})")
@click.option("--days", type=_Count(2, MAX_DAYS), default=7, show_default=True,
              help=f"length of the simulated window in days, ending now (2–{MAX_DAYS}); extended back "
                   "to the latest full working day when it holds none (the incidents happen on one)")
@click.option("--seed", "seed_value", type=_Count(0, 2**31 - 1), default=7, show_default=True,
              help="random seed (same seed, same bureau)")
@click.option("--force", is_flag=True, help="rebuild an already seeded home and append another simulated week")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def seed_cmd(citizens: int, days: int, seed_value: int, force: bool, as_json: bool) -> None:
    """Create staff, citizens, claims, cases, agreements and consents (personal fields encrypted), drive a
    simulated week of work and planted incidents through the gateway, run the SIEM, and check that every
    read is in the ledger and every incident raised its alert (exit 1 if one was missed)."""
    from demo import DemoError, SeedOptions, seed

    options = SeedOptions(citizens=citizens, days=days, seed=seed_value, force=force)
    try:
        options.check()
    except DemoError as exc:
        raise CliFailure(str(exc), EXIT_INPUT) from None
    settings = load_settings()
    err = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, disable=not err.is_terminal) as progress:
        try:
            report = seed(settings, options, _RichPhases(progress))
        except DemoError as exc:
            raise CliFailure(str(exc), getattr(exc, "exit_code", EXIT_INPUT)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print(report)
    if report.reads != report.read_events:
        click.echo(f"ztcp: error: {report.reads} plaintext reads but {report.read_events} pii.read events",
                   err=True)
        sys.exit(EXIT_INTEGRITY)
    if report.missed:
        sys.exit(EXIT_INPUT)


def _print(report: Any) -> None:
    out = Console(highlight=False)
    out.print(f"[bold]Seeded[/bold] {report.home}: {report.citizens} insured people, {report.staff} staff in "
              f"{report.offices} offices, {report.cases} cases, claims {report.claims}")
    out.print(f"Simulated window {report.window[0]} → {report.window[1]}: {report.requests} requests through "
              f"the gateway ({report.requests_per_second} requests/s, {report.events_per_second} ledger events/s; "
              f"phases {report.seconds} s)")
    print_table(_counts("Decisions by effect", "effect", "decisions", sorted(report.decisions.items())), out)
    print_table(_counts("Provenance events recorded", "type", "events", sorted(report.events.items())), out)
    mark = "[green]equal[/green]" if report.reads == report.read_events else "[red bold]NOT EQUAL[/red bold]"
    out.print(f"Plaintext reads returned: {report.reads}; pii.read events in the ledger: {report.read_events} "
              f"— {mark}")
    print_table(_counts("Alerts by rule", "rule", "alerts", report.alerts_by_rule.items()), out)
    t = Table(title="Planted incidents")
    for col in ("incident", "actor", "at (UTC)", "rule", "alert"):
        t.add_column(col)
    for i in report.incidents:
        alert = i.alert_id or "[red bold]MISSED[/red bold]"
        t.add_row(i.title, i.actor, i.at, i.rule, alert)
    print_table(t, out)
    for i in report.missed:
        out.print(f"[red bold]MISSED[/red bold]: {i.title} ({i.actor}) raised no {i.rule} alert"
                  + (f"; other rules: {', '.join(i.caught_by)}" if i.caught_by else ""))
    if not report.missed:
        out.print("Every planted incident raised its alert: `ztcp siem alerts` lists them.")
    ex = report.exchange
    if ex.get("transfers"):
        sent = ", ".join(f"{t['agency']} {t['citizens']}" for t in ex["transfers"])
        out.print(f"Nightly exchange: {len(ex['transfers'])} signed transfers ({sent} citizens), "
                  f"{len(ex['receipts'])} receipted; overdue: {', '.join(ex['overdue']) or 'none'}"
                  + (f" → alert {', '.join(ex['overdue_alerts'])}" if ex.get("overdue_alerts") else "")
                  + ". `ztcp exchange agreements` lists them; `ztcp exchange verify DIR` checks one offline "
                  f"(DIR under {report.home}/exchange/outbox).", soft_wrap=True)
    traced = sorted((i for i in report.incidents if i.citizen_ref), key=lambda i: i.name != "fraud_broker")
    if traced:
        # The citizen by reference only: the demo never prints a national ID.
        out.print(f"Trace the citizen concerned by {traced[0].title} (every access, each proven), as an auditor:\n"
                  "  export ZTCP_TOKEN=$(ztcp token issue --sub aud-01 --role auditor --method fido2 --mfa)\n"
                  f"  ztcp audit trace --citizen-ref {traced[0].citizen_ref}", soft_wrap=True)


def _counts(title: str, key: str, unit: str, rows: Iterable[tuple[str, int]]) -> Table:
    t = Table(title=title)
    t.add_column(key)
    t.add_column(unit, justify="right")
    for k, v in rows:
        t.add_row(k, str(v))
    return t


@command.command("early-warning")
@click.option("--employees", type=_Count(60, 2000), default=150, show_default=True, help="staff simulated")
@click.option("--seed", "seed_value", type=_Count(0, 2**31 - 1), default=11, show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where the demo's SIEM store and outbox go (default: a new temporary directory)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def early_warning_cmd(employees: int, seed_value: int, directory: Path | None, as_json: bool) -> None:
    """Baselines and claims-fraud indicators on four benign weeks and a week of planted cases; the
    critical alert's email delivered to a real SMTP server (aiosmtpd on loopback). Exit 1 if a planted
    case is missed. ZTCP_HOME is not touched."""
    import tempfile

    from demo.early_warning import run_early_warning

    try:
        import aiosmtpd  # noqa: F401 - the demo's SMTP receiver
    except ImportError:
        raise CliFailure("the demo's SMTP receiver needs aiosmtpd: pip install 'ztcp[dev]'") from None
    workdir = directory or Path(tempfile.mkdtemp(prefix="ztcp-early-warning-"))
    out = Console(highlight=False, stderr=as_json)
    report = run_early_warning(workdir, seed=seed_value, employees=employees,
                               say=lambda s: out.print(f"[dim]… {s}[/dim]"))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        _print_early(report, workdir)
    if len(report.caught) < len(report.planted):
        sys.exit(EXIT_INPUT)


def _print_early(report: Any, workdir: Path) -> None:
    from rich.markup import escape

    out = Console(highlight=False)
    if report.email:
        out.print("[bold]Email to the SOC[/bold] (received by the SMTP server):")
        out.print(escape(f"  From: {report.email['from']}\n  To: {report.email['to']}\n"
                         f"  Subject: {report.email['subject']}"), soft_wrap=True)
        for line in report.email["body"].strip().splitlines():
            out.print(escape(f"  | {line}"), soft_wrap=True)
    else:
        out.print("[red bold]No email arrived[/red bold] for the critical alert")
    t = Table(title=f"Planted cases: {len(report.caught)} of {len(report.planted)} caught")
    for col in ("case", "rule", "the alert's explanation"):
        t.add_column(col, overflow="fold")
    for name, rule in report.planted.items():
        t.add_row(name, rule, escape(report.caught[name]) if name in report.caught else "[red bold]MISSED[/red bold]")
    print_table(t, out)
    out.print(f"Benign weeks: {report.benign_events} events, {report.benign_alerts} early-warning alert(s); "
              f"after the two learning weeks {report.benign_after_learning} over {report.employee_days_scored} "
              f"employee-days scored: a false-positive rate of {report.false_positive_rate:.2f} per 1,000 "
              f"employee-days. Incident week: {report.other_alerts} other early-warning alert(s).", soft_wrap=True)
    out.print(f"[dim]{report.seconds:.0f} s; SIEM store and outbox in {workdir}[/dim]")
