"""`ztcp policy …`: the security officer's policy lifecycle (docs/design.md, Flows: publish policy).

validate → test → simulate → propose → approve (a different officer) → publish (signed) → rollback.
Commands that change state or read the decision log identify the officer by a verified token with
role ``security_officer`` (``--token`` or ``$ZTCP_TOKEN``), never by a flag.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from cli.durations import DURATION
from cli.errors import EXIT_INPUT, fail, stdout_is_tty
from policy import (
    DEFAULT_PACK_DIR,
    PolicyPack,
    Revision,
    RevisionStore,
    diff_packs,
    load_pack,
    pack_from_files,
    run_tests,
    simulate,
    validate_dir,
    validate_pack,
)
from policy.diff import changed_files
from server.settings import Settings, load_settings

P = ParamSpec("P")
R = TypeVar("R")

OFFICER_ROLE = "security_officer"
DECISION_LOG_NAME = "decisions.db"  # server.runtime keeps the decision log at ZTCP_HOME/decisions.db


def _token_option(fn: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "--token",
        "token",
        default=None,
        metavar="TOKEN|@FILE|-",
        help="officer token with role security_officer (default: $ZTCP_TOKEN); @FILE or - reads a file/stdin",
    )(fn)


def _officer(settings: Settings, token: str | None, action: str, revision: str | None = None) -> str:
    """The acting officer, from a verified token. A refused token is itself a ``policy.refused``
    admin event (the SIEM watches for people probing the lifecycle without the role)."""
    from cli.errors import CliFailure
    from cli.operator import current_operator

    try:
        return current_operator(settings, token, OFFICER_ROLE).id
    except CliFailure as exc:
        with _store(settings) as store:
            store.record_refusal("unauthenticated", action, "operator_refused", exc.format_message(), revision)
        raise


def _default_dir(settings: Settings) -> Path:
    return settings.policy_dir or DEFAULT_PACK_DIR


def _store(settings: Settings) -> RevisionStore:
    from server.runtime import open_revision_store

    return open_revision_store(settings)


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False))


def _shown(directory: Path, name: str) -> str:
    return name if name == "." else str(directory / name)


@click.group("policy")
def command() -> None:
    """Policy lifecycle: validate, test, simulate, propose, approve, publish, roll back."""


# --- checks ----------------------------------------------------------------------------------


@command.command("validate")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print problems as JSON")
def validate_cmd(directory: Path | None, as_json: bool) -> None:
    """Parse and compile every module and check data against the pack's JSON Schemas.

    Each problem is printed as FILE:LINE:COL: MESSAGE. Schema convention: schema/NAME.schema.json
    validates data.ztcp.NAME (a schema may set "x-ztcp-data-path" to name another path). Exit 1 on
    any problem.
    """
    directory = directory or _default_dir(load_settings())
    problems = validate_dir(directory)
    if as_json:
        _echo_json(
            {
                "directory": str(directory),
                "ok": not problems,
                "problems": [{**p.as_dict(), "file": _shown(directory, p.file)} for p in problems],
            }
        )
    else:
        for p in problems:
            click.echo(f"{_shown(directory, p.file)}:{p.line}:{p.col}: {p.message}")
        if not problems:
            click.echo(f"{directory}: ok")
        else:
            click.echo(f"{len(problems)} problem(s)", err=True)
    sys.exit(EXIT_INPUT if problems else 0)


@command.command("test")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--run", "run", metavar="REGEX", help="only tests whose id (data.pkg.test_name) matches")
@click.option("--coverage", is_flag=True, help="report line coverage per policy file")
@click.option("--threshold", type=click.FloatRange(0, 100), help="fail when total coverage is below PCT")
@click.option("-v", "--verbose", is_flag=True, help="list passing tests too")
@click.option("--json", "as_json", is_flag=True, help="print results as JSON")
def test_cmd(
    directory: Path | None,
    run: str | None,
    coverage: bool,
    threshold: float | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Run the test_* rules of *_test.rego modules. Exit 1 on a failure or coverage below --threshold."""
    directory = directory or _default_dir(load_settings())
    pack = load_pack(directory)
    report = run_tests(pack, run=run, coverage=coverage or threshold is not None)
    below = threshold is not None and (report.coverage_percent or 0.0) < threshold
    if as_json:
        doc = report.as_dict()
        doc["threshold"] = threshold
        doc["ok"] = report.ok and not below
        _echo_json(doc)
    else:
        for r in report.results:
            if r.outcome != "pass" or verbose:
                label = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[r.outcome]
                extra = f": {r.message}" if r.message else ""
                click.echo(f"{label} {r.id} ({r.duration_ms:.2f} ms) {_shown(directory, r.file)}:{r.line}{extra}")
        if report.coverage is not None:
            click.echo("coverage:")
            for c in report.coverage:
                click.echo(
                    f"  {c.percent:6.2f}%  {_shown(directory, c.file)}"
                    f"  ({len(c.covered)}/{len(c.covered) + len(c.not_covered)} lines)"
                )
            click.echo(f"  {report.coverage_percent:6.2f}%  total")
        click.echo(
            f"{report.passed} passed, {report.failed} failed, {report.errors} errors ({len(report.results)} tests)"
        )
        if below:
            click.echo(f"coverage {report.coverage_percent:.2f}% is below the threshold {threshold:.2f}%", err=True)
    none_ran = not report.results
    if none_ran:  # a typo in --run (or a pack without tests) must not pass a CI gate silently
        click.echo(f"no test matches --run {run!r}" if run else "no test_* rules found", err=True)
    sys.exit(0 if report.ok and not below and not none_ran else EXIT_INPUT)


# --- diff ------------------------------------------------------------------------------------


def _pack_for(store: RevisionStore | None, ref: str, settings: Settings) -> tuple[PolicyPack, str]:
    path = Path(ref)
    if path.is_dir():
        return load_pack(path), str(path)
    if store is None:
        fail(f"{ref} is not a directory and there is no revision store yet")
    revision = store.get(ref)
    return pack_from_files(store.files(revision.id), revision=revision.id), revision.id


@command.command("diff")
@click.argument("old", required=False, metavar="[REV]")
@click.argument("new", required=False, metavar="[REV|DIR]")
@click.option("--stat", is_flag=True, help="only list added / removed / modified files")
@click.option("--json", "as_json", is_flag=True, help="print changed files and the diff as JSON")
@click.option("--exit-code", is_flag=True, help="exit 1 when there are differences")
def diff_cmd(old: str | None, new: str | None, stat: bool, as_json: bool, exit_code: bool) -> None:
    """Unified diff of modules and data between revisions or against a working copy.

    No argument: the active revision against the working copy. One: that revision (or the active
    one, if the argument is a directory) against the working copy (or that directory). Two: REV
    against REV or DIR.
    """
    settings = load_settings()
    store = _store(settings)
    try:
        if old is None:
            old_ref, new_ref = "active", str(_default_dir(settings))
        elif new is None:
            old_ref, new_ref = ("active", old) if Path(old).is_dir() else (old, str(_default_dir(settings)))
        else:
            old_ref, new_ref = old, new
        old_pack, old_label = _pack_for(store, old_ref, settings)
        new_pack, new_label = _pack_for(store, new_ref, settings)
    finally:
        store.close()
    text = diff_packs(old_pack, new_pack, old_label, new_label)
    files = changed_files(old_pack, new_pack)
    if as_json:
        _echo_json(
            {
                "old": {"label": old_label, "digest": old_pack.digest},
                "new": {"label": new_label, "digest": new_pack.digest},
                "files": files,
                "diff": text,
            }
        )
    elif stat:
        for kind, mark in (("added", "A"), ("removed", "D"), ("modified", "M")):
            for name in files[kind]:
                click.echo(f"{mark} {name}")
    else:
        click.echo(text, nl=False)
    sys.exit(1 if exit_code and text else 0)


# --- simulation ------------------------------------------------------------------------------


def _print_report(report: Any) -> None:
    r = report
    click.echo(
        f"candidate {r.candidate['revision'] or 'working copy'} {r.candidate['digest'][:19]}…"
        f"  replayed {r.replayed} of {r.total} logged decisions"
        f" ({r.window['first'] or '-'} … {r.window['last'] or '-'})"
    )
    click.echo("baseline revisions: " + ", ".join(f"{k} ({v})" for k, v in r.baseline_revisions.items()) or "none")
    click.echo(
        f"changed {r.changed}  (effect {r.effect_changed}, permitted fields {r.fields_changed},"
        f" obligations {r.obligations_changed}, risk level {sum(m.count for m in r.risk_level_moves)})"
        f"  unchanged {r.unchanged}  skipped {r.skipped}  fail-closed (not replayed) {r.fail_closed}"
        f"  candidate errors {r.errors}"
    )
    click.echo(
        "effects before: "
        + ", ".join(f"{k} {v}" for k, v in r.effects_before.items())
        + "  after: "
        + ", ".join(f"{k} {v}" for k, v in r.effects_after.items())
    )
    if r.transitions:
        click.echo("effect transitions:")
        for m in r.transitions:
            click.echo(f"  {m.before:>8} → {m.after:<8} {m.count:>6}   e.g. {', '.join(m.samples)}")
    if r.risk_level_moves:
        click.echo("risk level moves:")
        for m in r.risk_level_moves:
            click.echo(f"  {m.before:>8} → {m.after:<8} {m.count:>6}   e.g. {', '.join(m.samples)}")
    if r.reasons:
        click.echo("top changed reasons (added / removed):")
        for c in r.reasons:
            click.echo(f"  {c.reason:<32} +{c.added:<6} -{c.removed}")
    if r.errors:
        click.echo(f"candidate failed to evaluate {r.errors} input(s) (would deny): {', '.join(r.error_samples)}")
    click.echo(
        f"risk score delta: mean {r.risk_score['mean_delta']:+}, max +{r.risk_score['max_increase']},"
        f" min {r.risk_score['max_decrease']}"
    )


def _run_simulation(pack: PolicyPack, entries: list, engine: Any, samples: int, *, show_progress: bool) -> Any:
    def evaluate(_pack: PolicyPack, doc: dict) -> dict:
        return engine.evaluate(doc)

    if not show_progress:
        return simulate(pack, entries, evaluate, samples=samples)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("replaying decisions", total=len(entries))
        return simulate(
            pack,
            entries,
            evaluate,
            samples=samples,
            progress=lambda done, _t: bar.update(task, completed=done),
        )


@command.command("simulate")
@click.argument("directory", metavar="DIR|REV", type=click.Path(path_type=Path))
@click.option("--since", type=DURATION, help="replay decisions from this long ago (e.g. 24h)")
@click.option("--last", type=click.IntRange(min=1), help="replay the last N decisions")
@click.option("--fail-on-change", is_flag=True, help="exit 1 when any decision would change")
@click.option("--samples", type=click.IntRange(0, 100), default=5, show_default=True, help="sample ids per row")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@_token_option
def simulate_cmd(
    directory: Path,
    since: int | None,
    last: int | None,
    fail_on_change: bool,
    samples: int,
    as_json: bool,
    token,
) -> None:
    """Replay logged decisions (inputs and signals as at decision time) against a candidate pack
    (a working directory or a stored revision).

    Reports effect transitions (permit→deny, …), the top changed reasons, sample decision ids and
    risk level moves. Deterministic. Default window: the last 24h.
    """
    if since is not None and last is not None:
        fail("give --since or --last, not both")
    settings = load_settings()
    _officer(settings, token, "simulate")
    if directory.is_dir():
        problems = validate_dir(directory)
        if problems:
            for p in problems:
                click.echo(f"{_shown(directory, p.file)}:{p.line}:{p.col}: {p.message}", err=True)
            fail(f"{directory}: the candidate has {len(problems)} problem(s); fix them before simulating")
        pack = load_pack(directory)
    else:  # a stored revision (r3, a digest prefix, shadow …)
        with _store(settings) as store:
            pack = store.pack(str(directory))

    from server.runtime import Runtime

    log_path = settings.ensure_home() / DECISION_LOG_NAME
    if not settings.database_url and not log_path.exists():  # (in PostgreSQL it is there once a PDP ran)
        fail(f"no decision log at {log_path}: nothing to replay yet")
    runtime = Runtime(settings)
    try:
        dlog = runtime.decision_log
        entries = dlog.entries(last=last) if last else dlog.entries(since=time.time() - (since or 86400))
        # The PDP's own engine (same kind, same bureau data) so replay matches production.
        engine = runtime.build_active(pack, revision="candidate").engine
        report = _run_simulation(pack, entries, engine, samples, show_progress=not as_json and stdout_is_tty())
    finally:
        runtime.close()
    if as_json:
        _echo_json(report.as_dict())
    else:
        _print_report(report)
    sys.exit(1 if fail_on_change and report.has_changes else 0)


# --- revisions -------------------------------------------------------------------------------


def _revision_doc(rev: Revision) -> dict[str, Any]:
    return rev.model_dump(mode="json")


def _print_revision_line(rev: Revision) -> None:
    approvers = ",".join(a.approver for a in rev.approvals) or "-"
    click.echo(
        f"{rev.id:<5} {rev.status:<11} {rev.created_at[:19]}  {rev.author:<14} approved-by {approvers:<14}"
        f" {rev.digest[7:19]}  {rev.message}"
    )


@command.command("propose")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("-m", "--message", required=True, help="what the change does and why")
@click.option("--json", "as_json", is_flag=True, help="print the new revision as JSON")
@_token_option
def propose_cmd(directory: Path, message: str, as_json: bool, token) -> None:
    """Validate and test DIRECTORY, then store it as a proposed revision."""
    settings = load_settings()
    author = _officer(settings, token, "propose")
    pack = load_pack(directory)
    problems = validate_pack(pack)
    if problems:
        for p in problems:
            click.echo(f"{_shown(directory, p.file)}:{p.line}:{p.col}: {p.message}", err=True)
        fail(f"{directory}: {len(problems)} problem(s); nothing proposed")
    report = run_tests(pack)
    if not report.ok:
        for r in report.results:
            if r.outcome != "pass":
                click.echo(f"{r.outcome.upper()} {r.id}: {r.message}", err=True)
        fail(f"{directory}: {report.failed} failed, {report.errors} erroring test(s); nothing proposed")
    with _store(settings) as store:
        rev = store.propose(
            pack,
            author=author,
            message=message,
            checks={"problems": 0, "passed": report.passed, "failed": 0, "errors": 0},
        )
    if as_json:
        _echo_json(_revision_doc(rev))
    else:
        click.echo(f"proposed {rev.id} ({rev.digest}) by {rev.author}; {report.passed} tests passed")
        click.echo(f"next: a second security officer runs `ztcp policy approve {rev.id}`")


@command.command("approve")
@click.argument("rev")
@click.option("--comment", help="review note recorded with the approval")
@click.option("--json", "as_json", is_flag=True)
@_token_option
def approve_cmd(rev: str, comment: str | None, as_json: bool, token) -> None:
    """Approve a revision (maker-checker: the author cannot approve their own)."""
    settings = load_settings()
    approver = _officer(settings, token, "approve", rev)
    with _store(settings) as store:
        revision = store.approve(rev, approver=approver, comment=comment)
    if as_json:
        _echo_json(_revision_doc(revision))
    else:
        click.echo(f"{revision.id} approved by {approver}; status {revision.status}")


@command.command("publish")
@click.argument("rev")
@click.option("--shadow", is_flag=True, help="report-only: the PDP evaluates it beside the active one")
@click.option("--emergency", is_flag=True, help="publish without approval (needs --reason; raises an alert)")
@click.option("--reason", help="why an emergency publish is needed")
@click.option("--json", "as_json", is_flag=True)
@_token_option
def publish_cmd(rev: str, shadow: bool, emergency: bool, reason: str | None, as_json: bool, token) -> None:
    """Sign REV's bundle and make it the active (or shadow) revision. Running PDPs switch within seconds."""
    if emergency and not (reason and reason.strip()):
        fail("--emergency needs --reason TEXT")
    if reason and not emergency:
        fail("--reason is only for --emergency")
    settings = load_settings()
    actor = _officer(settings, token, "publish", rev)
    from server.bootstrap import system_keys

    signer = system_keys(settings).bundle_signing
    with _store(settings) as store:
        revision = store.publish(
            rev, actor=actor, signer=signer, shadow=shadow, emergency_reason=reason if emergency else None
        )
    if as_json:
        _echo_json(_revision_doc(revision))
        return
    where = "shadow (report-only)" if shadow else "active"
    click.echo(f"{revision.id} ({revision.digest}) published as {where} by {actor}")
    if emergency:
        click.echo("EMERGENCY publish recorded (policy.emergency_publish); the SOC is alerted.", err=True)


@command.command("rollback")
@click.argument("rev", required=False)
@click.option("--shadow", "clear_shadow", is_flag=True, help="stop shadow evaluation instead")
@click.option("--reason", help="why (recorded with the admin event)")
@click.option("--json", "as_json", is_flag=True)
@_token_option
def rollback_cmd(rev: str | None, clear_shadow: bool, reason: str | None, as_json: bool, token) -> None:
    """Re-activate the previously published revision (or REV, if it was published before)."""
    settings = load_settings()
    actor = _officer(settings, token, "rollback", rev)
    with _store(settings) as store:
        if clear_shadow:
            if rev:
                fail("--shadow takes no REV")
            cleared = store.clear_shadow(actor=actor, reason=reason)
            if as_json:
                _echo_json({"shadow_cleared": cleared})
            else:
                click.echo(f"shadow evaluation of {cleared} stopped")
            return
        revision = store.rollback(rev, actor=actor, reason=reason)
    if as_json:
        _echo_json(_revision_doc(revision))
    else:
        click.echo(f"rolled back: {revision.id} ({revision.digest}) is active again")


@command.command("history")
@click.option("--limit", type=click.IntRange(min=1), help="newest N revisions")
@click.option("--json", "as_json", is_flag=True)
def history_cmd(limit: int | None, as_json: bool) -> None:
    """Revisions, newest first, with status and approvals."""
    settings = load_settings()
    with _store(settings) as store:
        revisions = store.history(limit)
        state = store.state()
    if as_json:
        _echo_json(
            {
                "active": state.active,
                "shadow": state.shadow,
                "revisions": [_revision_doc(r) for r in revisions],
            }
        )
        return
    if not revisions:
        click.echo("no revisions yet (the server publishes the default pack as r1 on first start)")
    for rev in revisions:
        _print_revision_line(rev)


@command.command("show")
@click.argument("rev")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(rev: str, as_json: bool) -> None:
    """One revision: metadata, approvals, files."""
    settings = load_settings()
    with _store(settings) as store:
        revision = store.get(rev)
        events = [e for e in store.iter_since(None) if e.revision == revision.id]
    if as_json:
        doc = _revision_doc(revision)
        doc["events"] = [e.model_dump(mode="json") for e in events]
        _echo_json(doc)
        return
    click.echo(f"revision   {revision.id}  ({revision.status})")
    click.echo(f"digest     {revision.digest}")
    click.echo(f"parent     {revision.parent or '-'}")
    click.echo(f"author     {revision.author}  {revision.created_at}")
    click.echo(f"message    {revision.message}")
    for a in revision.approvals:
        click.echo(f"approved   {a.approver}  {a.approved_at}" + (f"  {a.comment}" if a.comment else ""))
    if revision.published_at:
        click.echo(f"published  {revision.published_by}  {revision.published_at}")
    if revision.emergency_reason:
        click.echo(f"EMERGENCY  {revision.emergency_reason}")
    click.echo(f"files      {len(revision.files)}")
    for name in revision.files:
        click.echo(f"  {name}")
    for e in events:
        click.echo(f"event      {e.time[:19]} {e.type:<25} {e.actor}" + (f"  {e.reason}" if e.reason else ""))


@command.command("bundle")
@click.argument("rev")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False), help="FILE.tar.gz")
def bundle_cmd(rev: str, output: Path) -> None:
    """Export the signed OPA bundle of a published revision."""
    settings = load_settings()
    with _store(settings) as store:
        revision = store.get(rev)
        data = store.bundle(revision.id)
    output.write_bytes(data)
    click.echo(f"wrote {output} ({len(data)} bytes, revision {revision.id}, {revision.digest})")


@command.command("events")
@click.option("--after", "cursor", default=None, help="only events after this cursor")
@click.option("--json", "as_json", is_flag=True)
def events_cmd(cursor: str | None, as_json: bool) -> None:
    """Lifecycle admin events (propose, approve, publish, emergency publish, rollback, refused)."""
    settings = load_settings()
    with _store(settings) as store:
        events = list(store.iter_since(cursor))
    if as_json:
        _echo_json([e.model_dump(mode="json") for e in events])
        return
    for e in events:
        click.echo(
            f"{e.cursor:>5} {e.time[:19]} {e.type:<25} {e.actor:<14} {e.revision or '-':<5}"
            + (f"  {e.reason}" if e.reason else "")
        )
