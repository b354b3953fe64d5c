"""`ztcp siem …`: list and test the Sigma pack, run it, triage alerts, export to Elasticsearch."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cli.errors import CliFailure
from cli.operator import Operator, authorize, current_operator, token_option
from cli.tables import print_table
from server.settings import Settings, load_settings
from server.siem import DB_NAME, alert_sinks, live_sources, make_engine, open_alerts, siem_pack
from siem_rules import (
    AlertBackend,
    JsonlSource,
    SiemError,
    Source,
    connect,
    triage,
)
from siem_rules.alerts import STATUSES
from siem_rules.export import TARGETS, export
from siem_rules.fixtures import run_fixtures
from siem_rules.rulepack import parse_duration


def _parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliFailure(f"--since: expected RFC 3339 time or a duration like 24h, got {text!r}") from None
    if dt.tzinfo is None:
        raise CliFailure("--since: the time needs a UTC offset (e.g. 2026-03-04T00:00:00+08:00)")
    return dt


def _console() -> Console:
    return Console(stderr=False, highlight=False)


def _alerts_table(alerts: list[Any]) -> Table:
    table = Table(title=f"{len(alerts)} alert(s)")
    for col in ("id", "level", "rule", "group", "first seen (UTC)", "last seen (UTC)", "events", "status"):
        table.add_column(col, no_wrap=True, justify="right" if col == "events" else "left")
    for a in alerts:
        group = ", ".join(f"{k}={v}" for k, v in a.group_keys.items()) or "-"
        table.add_row(a.alert_id, a.level, a.rule_name, group, _minute(a.first_seen), _minute(a.last_seen),
                      str(a.event_count), a.status)
    return table


def _minute(iso: str) -> str:
    """'2026-11-20T00:31:59.302459Z' → '2026-11-20 00:31:59' (the header says UTC)."""
    return iso[:19].replace("T", " ")


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


# ---- commands ----------------------------------------------------------------------------------


@click.group(name="siem")
def command() -> None:
    """Detection rules (Sigma) over decisions, provenance, key and policy events; alerts."""


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="SIEM lists/config YAML (default: $ZTCP_HOME/siem.yml if present)",
)


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="print rules as JSON")
@config_option
def list_rules(as_json: bool, config_path: Path | None) -> None:
    """List the rules with their level, type and logsource."""
    pack = siem_pack(load_settings(), config_path)
    rows = [
        {
            "name": r.name,
            "id": r.id,
            "title": r.title,
            "level": r.level,
            "type": r.rule_type,
            "logsource": [f"ztcp/{s}" for s in r.logsource],
            "tags": r.tags,
        }
        for r in pack.rules
    ]
    if as_json:
        _dump(rows)
        return
    table = Table(title=f"{len(rows)} rules")
    for col in ("name", "level", "type", "logsource", "title"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["level"], r["type"], ", ".join(r["logsource"]), r["title"])
    print_table(table, _console())


@command.command("test")
@click.argument("rule", required=False)
@click.option("--json", "as_json", is_flag=True, help="print case results as JSON")
@config_option
def test_rules(rule: str | None, as_json: bool, config_path: Path | None) -> None:
    """Run each rule's fixtures: `match` cases must alert, `nomatch` must not (exit 1 on failure)."""
    pack = siem_pack(load_settings(), config_path)
    rules = [pack.find(rule)] if rule else None
    results = run_fixtures(pack, rules)
    failed = [r for r in results if not r.passed]
    if as_json:
        _dump([r.__dict__ for r in results])
    else:
        for r in results:
            mark = "PASS" if r.passed else "FAIL"
            click.echo(f"{mark}  {r.rule}  [{r.expectation}] {r.name}" + (f"  — {r.detail}" if r.detail else ""))
        click.echo(f"{len(results) - len(failed)}/{len(results)} fixture cases passed")
    if failed:
        sys.exit(1)


@command.command("run")
@click.option("--since", help="re-evaluate events from this time (RFC 3339) or this long ago (24h, 7d)")
@click.option(
    "--events",
    "events_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='JSONL file, one {"kind": "decision"|"provenance"|"key"|"policy", ...event} per line, or the '
    "ledger entries `ztcp audit export --format jsonl` writes",
)
@click.option("--json", "as_json", is_flag=True, help="print the alerts raised or extended by this run")
@config_option
def run(since: str | None, events_file: Path | None, as_json: bool, config_path: Path | None) -> None:
    """Ingest new events and evaluate the pack incrementally (per-rule watermarks)."""
    settings = load_settings()
    since_dt = _parse_since(since)
    engine = make_engine(settings, config_path)
    try:
        sources: list[Source] = [JsonlSource(events_file)] if events_file else live_sources(settings)
        ingested = engine.ingest(sources)
        if sys.stderr.isatty() and not as_json:
            from rich.progress import Progress

            with Progress(console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task("running rules", total=len(engine.pack.rules))
                report = engine.run(since=since_dt, on_rule=lambda r: progress.advance(task))
        else:
            report = engine.run(since=since_dt)
        alerts = [engine.alerts.get(a) for a in sorted(set(report.alerts_touched))]
    finally:
        engine.close()
    if as_json:
        _dump([a.model_dump() for a in alerts])
        return
    console = _console()
    console.print(f"ingested {ingested} event(s); ran {len(report.rules)} rule(s) in {report.seconds:.2f}s")
    if alerts:
        print_table(_alerts_table(alerts), console)
    else:
        console.print("no new alerts")


@command.command("alerts")
@click.option("--status", type=click.Choice(STATUSES), help="only alerts with this status")
@click.option("--rule", "rule_key", help="only alerts of this rule (name or id)")
@click.option("--limit", type=int, help="at most this many")
@click.option("--json", "as_json", is_flag=True, help="print alerts as JSON (with evidence event ids)")
@config_option
def alerts(
    status: str | None, rule_key: str | None, limit: int | None, as_json: bool, config_path: Path | None
) -> None:
    """List alerts."""
    engine = make_engine(load_settings(), config_path)
    try:
        rule_id = engine.pack.find(rule_key).id if rule_key else None
        found = engine.alerts.list(status=status, rule_id=rule_id, limit=limit)
    finally:
        engine.close()
    if as_json:
        _dump([a.model_dump() for a in found])
    else:
        print_table(_alerts_table(found), _console())


SOC_ROLE = "soc_analyst"


def _triager(token: str | None, alert_id: str) -> tuple[Settings, Operator, AlertBackend, sqlite3.Connection]:
    """The SOC analyst the token names, permitted by the PDP to change this alert, the alert store
    and this home's SIEM store (the evidence events)."""
    settings = load_settings()
    operator = current_operator(settings, token, SOC_ROLE)
    authorize(settings, operator, dataset="alerts", action="update", purpose="security_monitoring",
              record_id=alert_id[:128])
    return settings, operator, open_alerts(settings), connect(settings.ensure_home() / DB_NAME)


@command.command("ack")
@click.argument("alert_id")
@click.option("--close", is_flag=True, help="close the alert instead of acknowledging it")
@click.option("--reopen", is_flag=True, help="set the alert back to open")
@click.option("--json", "as_json", is_flag=True)
@token_option
def ack(alert_id: str, close: bool, reopen: bool, as_json: bool, token: str | None) -> None:
    """Acknowledge (or --close / --reopen) an alert, as the SOC analyst the token names; the PDP
    decides and the change is recorded with you as its actor. New evidence keeps extending
    acknowledged alerts; a closed alert is never extended (a recurrence opens a new one)."""
    if close and reopen:
        raise CliFailure("--close and --reopen are exclusive")
    status = "closed" if close else "open" if reopen else "acknowledged"
    settings, operator, store, conn = _triager(token, alert_id)
    try:
        alert = triage.set_status(store, alert_id, status, actor=operator.id, events=conn)
        for sink in alert_sinks(settings):
            try:
                sink.publish([alert])
            except (SiemError, OSError) as exc:
                click.echo(f"ztcp: warning: alert not mirrored to Elasticsearch: {exc}", err=True)
    finally:
        store.close()
        conn.close()
    if as_json:
        _dump(alert.model_dump())
    else:
        click.echo(f"{alert.alert_id} {alert.status} (by {operator.id})")


@command.command("comment")
@click.argument("alert_id")
@click.argument("text")
@token_option
def comment_cmd(alert_id: str, text: str, token: str | None) -> None:
    """Add a comment to an alert's history (no personal data: national IDs and phone numbers are refused)."""
    _, operator, store, conn = _triager(token, alert_id)
    try:
        triage.comment(store, alert_id, text, actor=operator.id, events=conn)
    finally:
        store.close()
        conn.close()
    click.echo(f"{alert_id}: comment recorded (by {operator.id})")


@command.command("history")
@click.argument("alert_id")
@click.option("--json", "as_json", is_flag=True)
def history_cmd(alert_id: str, as_json: bool) -> None:
    """Who triaged an alert and commented on it, when (UTC)."""
    store = open_alerts(load_settings())
    try:
        store.get(alert_id)
        rows = store.history(alert_id)
    finally:
        store.close()
    if as_json:
        _dump(rows)
        return
    table = Table("time (UTC)", "action", "by", "status", "self-review", "comment")
    for r in rows:
        status = f"{r['from_status']} → {r['to_status']}" if r["to_status"] else ""
        table.add_row(r["time"], r["type"], r["actor"], status, "yes" if r["self_review"] else "", r["comment"] or "")
    print_table(table)


@command.command("export")
@click.option("--target", type=click.Choice(TARGETS), required=True, help="query language or Kibana import")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="directory to write into",
)
@click.option("--json", "as_json", is_flag=True, help="print the export report as JSON")
@config_option
def export_cmd(target: str, out_dir: Path, as_json: bool, config_path: Path | None) -> None:
    """Convert the pack with pySigma's Elasticsearch backends (rules a target cannot express are listed)."""
    pack = siem_pack(load_settings(), config_path)
    report = export(pack, target, out_dir)
    if as_json:
        _dump(report.as_dict())
        return
    click.echo(f"exported {len(report.exported)} rule(s) to {out_dir}")
    for name, reason in sorted(report.skipped.items()):
        click.echo(f"  skipped {name}: {reason}")
