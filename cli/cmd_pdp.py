"""`ztcp pdp decide`: ask the decision point from the command line (same path as the HTTP API)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from pydantic import ValidationError

from cli.errors import EXIT_DENIED, EXIT_OK, fail
from cli.tables import print_table
from contracts.decision import Decision, DecisionRequest
from server.runtime import Runtime
from server.settings import load_settings


@click.group("pdp")
def command() -> None:
    """Policy decision point."""


def _load_request(path: str) -> DecisionRequest:
    try:
        raw = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        doc = json.loads(raw)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        fail(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
    if isinstance(doc, dict) and doc.get("subject_token") in (None, "", "SUBJECT_TOKEN"):
        # Keep tokens out of files and argv: take the subject token from the environment.
        token = os.environ.get("ZTCP_SUBJECT_TOKEN")
        if not token:
            fail("the request has no subject_token: put one in the file or set ZTCP_SUBJECT_TOKEN")
        doc["subject_token"] = token
    try:
        return DecisionRequest.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:8])
        fail(f"{path}: invalid decision request: {problems}")
    raise AssertionError("unreachable")


@command.command("decide")
@click.option("--input", "input_path", required=True, metavar="FILE",
              help="decision request JSON (docs/design.md, Contracts); '-' for stdin. subject_token may come from "
                   "$ZTCP_SUBJECT_TOKEN")
@click.option("--explain", is_flag=True, help="also print the signals and policy input the PDP used")
@click.option("--json", "as_json", is_flag=True, help="print the decision as JSON")
def decide(input_path: str, explain: bool, as_json: bool) -> None:
    """Decide one request. Exit 0 on permit, 2 on deny or step_up."""
    request = _load_request(input_path)
    runtime = Runtime(load_settings())
    try:
        point = runtime.point
        decision = point.decide(request, caller="cli")
        entry = point.log.get(decision.decision_id) if explain and point.log.flush() else None
    finally:
        runtime.close()
    if as_json:
        out = decision.model_dump(mode="json")
        if entry is not None:
            out["explain"] = {"input": entry["input"]}
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print(decision, entry)
    sys.exit(EXIT_OK if decision.effect == "permit" else EXIT_DENIED)


def _print(decision: Decision, entry: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    colour = {"permit": "green", "deny": "red", "step_up": "yellow"}[decision.effect]
    console.print(f"[bold {colour}]{decision.effect.upper()}[/]  risk {decision.risk.score} "
                  f"({decision.risk.level})  decision {decision.decision_id}")
    console.print(f"policy {decision.policy.revision}  reasons: {', '.join(decision.reasons)}")
    if decision.risk.factors:
        table = Table("factor", "points", "detail", title="risk factors")
        for f in decision.risk.factors:
            table.add_row(f.name, str(f.points), f.detail)
        print_table(table, console)
    if decision.permitted_fields:
        console.print(f"permitted fields: {', '.join(decision.permitted_fields)}")
    for o in decision.obligations:
        console.print(f"obligation: {json.dumps(o, ensure_ascii=False)}")
    if entry is not None:
        console.print_json(data={"signals": entry["input"].get("signals"), "subject": entry["input"]["subject"]})
