"""`ztcp exchange …`: government data exchange (exchange/, issue #14). Commands only; the flows are
``exchange.ExchangeService``'s and the offline checks ``exchange.verify``'s.

The bureau's side: ``send`` (a batch under an agreement, resumable), ``receipt`` (record the agency's
acknowledgement), ``receive`` (record data an agency sent us), ``stamp`` (time-stamp records made
while the TSA was unreachable), ``sweep`` (record overdue receipts), ``agreements``. Anyone's side,
offline: ``verify``. The agency's side (tools for the demo, tests and the agencies' own trials):
``keygen``, ``open``, ``acknowledge``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from cli.errors import EXIT_INTEGRITY, CliFailure
from cli.operator import token_option
from cli.tables import print_table
from server.settings import load_settings

ROLE = "exchange_officer"


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} citizens/s" if speed else "– citizens/s", style="progress.data.speed")


def _emit(as_json: bool, data: Any) -> bool:
    if as_json:
        click.echo(json.dumps(data, default=str, indent=2, ensure_ascii=False))
    return as_json


def _runtime_operator(token: str | None) -> tuple[Any, Any]:
    from cli.operator import current_operator
    from server.exchange import cli_operator
    from server.runtime import Runtime

    settings = load_settings()
    operator = current_operator(settings, token, ROLE)
    rt = Runtime(settings)
    subject = rt.verifier.verify_subject(operator.token)
    return rt, cli_operator(rt, subject, operator.token)


@click.group("exchange")
def command() -> None:
    """Signed, time-stamped, receipted transfers to other agencies; offline verification."""


@command.command("send")
@click.option("--agreement", "agreement_id", required=True, help="the data-sharing agreement (signed register)")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV or JSONL of national IDs or citizen refs, one citizen per line")
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="new directory for the sealed payload and the transfer record; the same one resumes")
@click.option("--fields", default=None, help="comma-separated fields (default: the agreement's)")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None, help="default: by extension")
@click.option("--json", "as_json", is_flag=True, help="machine-readable summary")
@token_option
def send(agreement_id: str, input_path: Path, output_dir: Path, fields: str | None, fmt: str | None,
         as_json: bool, token: str | None) -> None:
    """Send a batch to an agency under its agreement: one decision, every citizen recorded, sealed to the agency.

    Interrupted (even kill -9)? Run the same command again: it resumes at the last sealed segment,
    with no record twice and none missing. Exit 1 bad input (nothing sent), 2 refused.
    """
    rt, op = _runtime_operator(token)
    console = Console(stderr=True)
    try:
        with Progress(TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                      disable=as_json or not console.is_terminal) as prog:
            task = prog.add_task("send", total=None)
            summary = rt.exchange.send(
                op, agreement_id, input_path, output_dir,
                fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else None, fmt=fmt,
                progress=lambda done, total: prog.update(task, completed=done, total=total))
    finally:
        rt.close()
    if _emit(as_json, summary):
        return
    table = Table(title=f"transfer {summary['transfer_id']}" + (" (resumed)" if summary["resumed"] else ""),
                  show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for label, value in (
        ("agreement", f"{summary['agreement_id']} → {summary['agency']} ({summary['dataset']})"),
        ("citizens sent", f"{summary['citizens']:,}"),
        ("not in the database", f"{summary['not_found']:,} (not listed)"),
        ("fields", ", ".join(summary["fields"])),
        ("withheld by policy", ", ".join(summary["withheld_fields"]) or "none"),
        ("payload", f"{summary['payload_bytes']:,} bytes, SHA-256 {summary['payload_sha256']}"),
        ("time-stamp", summary["timestamp"]),
        ("ledger", f"citizens' events at seq {_ranges(summary['ledger_seqs'])}; transfer at "
                   f"{summary['transfer_seq']}"),
        ("receipt due", summary["receipt_due"]),
        ("rate", f"{summary['records_per_second'] or 0:,.0f} citizens/s over {summary['seconds']} s"),
        ("output", summary["output_dir"]),
    ):
        table.add_row(label, str(value))
    print_table(table, Console(highlight=False))


def _ranges(ranges: list[list[int]]) -> str:
    shown = ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in ranges[:4])
    return shown + (f" (+{len(ranges) - 4} more ranges)" if len(ranges) > 4 else "") if ranges else "none"


@command.command("verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tsa-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="the TSA's trust anchor (default: ZTCP_TSA_CA_FILE)")
@click.option("--signing-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="pin the bureau's exchange public key (JWK file) instead of trusting keys.json")
@click.option("--checkpoint-key", default=None, help="pin the bureau's checkpoint verifier key (note vkey)")
@click.option("--agency-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="the agency's private X25519 JWK: also open every segment of the payload")
@click.option("--require-receipt", is_flag=True, help="an outstanding receipt is a failure too")
@click.option("--json", "as_json", is_flag=True)
def verify(directory: Path, tsa_ca: Path | None, signing_key: Path | None, checkpoint_key: str | None,
           agency_key: Path | None, require_receipt: bool, as_json: bool) -> None:
    """Verify a transfer offline: payload digest, signature, time-stamp, receipt, ledger inclusion.

    Exit 0 when every check passes (an outstanding receipt is shown, not failed); 3 naming the first
    check that fails.
    """
    from exchange.verify import load_key_file, verify_transfer
    from provenance.timestamp import TsaVerifier

    settings = load_settings()
    ca = tsa_ca or settings.tsa_ca_file
    result = verify_transfer(
        directory, tsa_verifier=TsaVerifier.from_pem_file(ca) if ca else None,
        signing_key=load_key_file(signing_key, "Ed25519", private=False) if signing_key else None,
        checkpoint_key=checkpoint_key, require_receipt=require_receipt,
        decryption_key=load_key_file(agency_key, "X25519", private=True) if agency_key else None)
    if not _emit(as_json, result.as_dict()):
        table = Table(title=f"transfer {result.transfer_id}: {'verified' if result.ok else 'NOT VERIFIED'}")
        for col in ("check", "status", "detail"):
            table.add_column(col, overflow="fold")
        for c in result.checks:
            style = "bold red" if c.failed else "yellow" if c.status != "ok" else None
            table.add_row(c.name, c.status, c.detail, style=style)
        print_table(table, Console(highlight=False))
    bad = result.first_failure()
    if bad is not None:
        raise CliFailure(f"transfer {result.transfer_id}: {bad.name} failed: {bad.detail}", EXIT_INTEGRITY)


@command.command("agreements")
@click.option("--json", "as_json", is_flag=True)
def agreements(as_json: bool) -> None:
    """Agreements of the signed register: status, fields, transfers, receipts outstanding and overdue."""
    from server.runtime import Runtime

    rt = Runtime(load_settings())
    try:
        rows = rt.exchange.agreement_status()
    finally:
        rt.close()
    if _emit(as_json, rows):
        return
    table = Table(title="data-sharing agreements (active signed revision)")
    for col in ("agreement", "agency", "dataset", "status", "fields", "keys", "sent", "received",
                "receipts outstanding", "overdue"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["agreement_id"], r["agency"], r["dataset"], r["status"], ", ".join(r["fields"]),
                      "yes" if r["keys"] else "no", str(r["transfers"]), str(r["inbound"]),
                      str(r["receipts_outstanding"]), str(r["receipts_overdue"]),
                      style="bold red" if r["receipts_overdue"] else "yellow" if r["status"] != "in force" else None)
    print_table(table, Console(highlight=False))


@command.command("receipt")
@click.argument("receipt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@token_option
def receipt(receipt_file: Path, as_json: bool, token: str | None) -> None:
    """Record the agency's receipt (a JWS file); a wrong key or digest is refused (exit 2) and recorded."""
    rt, op = _runtime_operator(token)
    try:
        result = rt.exchange.record_receipt(receipt_file.read_text().strip())
    finally:
        rt.close()
    if not _emit(as_json, result):
        click.echo(f"receipt recorded for {result['transfer_id']}" + (" (already)" if result.get("duplicate") else ""))


@command.command("receive")
@click.option("--agreement", "agreement_id", required=True)
@click.option("--payload", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the bytes the agency sent (kept where the bureau keeps them; ztcp keeps the digest)")
@click.option("--statement", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the agency's signed statement (JWS) over the payload's SHA-256")
@click.option("--citizens", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="the citizens the payload concerns (CSV or JSONL of national IDs or citizen refs)")
@click.option("--json", "as_json", is_flag=True)
@token_option
def receive(agreement_id: str, payload: Path, statement: Path, citizens: Path, as_json: bool,
            token: str | None) -> None:
    """Record data received from an agency: one pii.receive per citizen, the sender's signature verified."""
    rt, op = _runtime_operator(token)
    try:
        result = rt.exchange.receive(op, agreement_id, payload, statement.read_text().strip(), citizens)
    finally:
        rt.close()
    if not _emit(as_json, result):
        click.echo(f"recorded {result['citizens']} citizen(s) received from {result['agency']} "
                   f"({result['transfer_id']}, ledger seq {result['transfer_seq']})")


@command.command("stamp")
@click.option("--json", "as_json", is_flag=True)
def stamp(as_json: bool) -> None:
    """Time-stamp transfer records signed while the TSA was unreachable (ZTCP_EXCHANGE_TSA_UNAVAILABLE=later)."""
    from server.runtime import Runtime

    settings = load_settings()
    if not settings.tsa_url:
        raise CliFailure("no TSA configured (ZTCP_TSA_URL)")
    rt = Runtime(settings)
    try:
        done = rt.exchange.stamp_pending()
        left = len(rt.exchange.store.pending_timestamps())
    finally:
        rt.close()
    if not _emit(as_json, {"stamped": done, "pending": left}):
        click.echo(f"time-stamped {done} transfer record(s); {left} still pending")
    if left:
        raise CliFailure(f"{left} transfer record(s) still without a time-stamp (TSA unreachable?)", 2)


@command.command("sweep")
@click.option("--json", "as_json", is_flag=True)
def sweep(as_json: bool) -> None:
    """Record an exchange.receipt_overdue event for each transfer past its receipt deadline (`ztcp serve`
    does this every minute)."""
    from server.runtime import Runtime

    rt = Runtime(load_settings())
    try:
        flagged = rt.exchange.sweep_overdue()
    finally:
        rt.close()
    if not _emit(as_json, {"overdue": flagged}):
        click.echo(f"{len(flagged)} transfer(s) newly overdue" + (": " + ", ".join(flagged) if flagged else ""))


# -- the agency's side ----------------------------------------------------------------------------


@command.command("keygen")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def keygen(out_dir: Path) -> None:
    """An agency's key pair files: signing.jwk and decryption.jwk (private, 0600) and register.json (the
    public keys, for its agreement in bureau/data.json)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from exchange.crypto import private_jwk, public_jwk

    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sig, dec = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    for name, doc in (("signing.jwk", private_jwk(sig)), ("decryption.jwk", private_jwk(dec))):
        fd = os.open(out_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
    (out_dir / "register.json").write_text(json.dumps({"receipt_key": public_jwk(sig.public_key()),
                                                       "encryption_key": public_jwk(dec.public_key())}, indent=2))
    click.echo(f"wrote {out_dir}/signing.jwk, decryption.jwk (private) and register.json (public)")


@command.command("open")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the agency's decryption.jwk")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def open_cmd(directory: Path, key_file: Path, output: Path) -> None:
    """Decrypt a payload with the agency's key into JSON lines (every segment authenticated, in order)."""
    from exchange.crypto import open_sealed
    from exchange.service import PAYLOAD
    from exchange.verify import load_key_file

    _head, segments = open_sealed(directory / PAYLOAD, load_key_file(key_file, "X25519", private=True))
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, prev = 0, None
    with os.fdopen(fd, "wb") as f:
        for seg in segments:
            if prev is not None:
                f.write(prev)
                n += prev.count(b"\n")
            prev = seg  # the last segment is the trailer, not data
    click.echo(f"wrote {n} record(s) to {output}", err=True)


@command.command("acknowledge")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the agency's signing.jwk")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the receipt here (default: stdout)")
def acknowledge(directory: Path, key_file: Path, output: Path | None) -> None:
    """The agency's receipt: its signature over the SHA-256 of the payload it received."""
    from exchange import receipt_for
    from exchange.verify import load_key_file

    token = receipt_for(directory, load_key_file(key_file, "Ed25519", private=True))
    if output:
        output.write_text(token + "\n")
    else:
        sys.stdout.write(token + "\n")
