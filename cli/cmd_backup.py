"""`ztcp backup create|verify|restore`: consistent, checkable copies of a ztcp home."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from rich.console import Console

from cli.errors import CliFailure
from server.backup import BackupError, BackupReport, check_backup, create_backup, ledger_verifier, restore_backup
from server.ledger import ledger_database, ledger_store
from server.settings import load_settings


def _run(fn):  # noqa: ANN001, ANN202
    try:
        return fn()
    except BackupError as exc:
        raise CliFailure(str(exc), exc.exit_code) from None


def _say(report: BackupReport, as_json: bool, what: str) -> None:
    if as_json:
        click.echo(orjson.dumps(report.as_dict()))
        return
    size = "no ledger" if report.ledger_size is None else f"ledger of {report.ledger_size} events verified"
    click.echo(f"{what} {report.directory}: {len(report.files)} files, {size}")
    for name, why in report.excluded.items():
        click.echo(f"  not included: {name} — {why}")


@click.group("backup")
def command() -> None:
    """Back up a ztcp home while it runs, check a backup, restore one into an empty home."""


@command.command("create")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="what was copied, as JSON")
def create(directory: Path, as_json: bool) -> None:
    """Copy every store of ZTCP_HOME into DIRECTORY (new or empty), consistently, with a manifest.

    The master key is not copied; keep it apart from the backup. The copied ledger is verified. A
    ledger in PostgreSQL (ZTCP_DATABASE_URL) is copied from one snapshot into the backup's SQLite
    ledger file.
    """
    settings = load_settings()
    home = settings.ensure_home()
    elsewhere = {}
    if settings.protected_db:
        elsewhere["protected database"] = "ZTCP_PROTECTED_DB is outside the home: back it up with its own tools"
    if settings.database_url:
        elsewhere["shared database"] = ("ZTCP_DATABASE_URL (decision log, signal history, policy revisions, the "
                                        "sealed keyring, console sessions) is outside the home: "
                                        "back it up with PostgreSQL's tools (pg_dump, base backups with WAL archiving)")
    if settings.vault_addr:
        elsewhere["Vault keys"] = "keys in Vault/OpenBao stay there: back up Vault itself (Raft snapshots)"
    err = Console(stderr=True)
    with err.status("backing up") as status:
        report = _run(lambda: create_backup(home, directory, verify_ledger=ledger_verifier(settings),
                                            progress=lambda name: status.update(f"backing up {name}"),
                                            elsewhere=elsewhere,
                                            ledger_store=lambda path: ledger_store(settings, path),
                                            ledger_source=ledger_database(settings)))
    _say(report, as_json, "backed up to")


@command.command("verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="the manifest's facts, as JSON")
def verify(directory: Path, as_json: bool) -> None:
    """Check every file against the manifest and verify the copied ledger. Exit 3 if anything differs."""
    settings = load_settings()
    report = _run(lambda: check_backup(directory, verify_ledger=ledger_verifier(settings)))
    _say(report, as_json, "intact:")


@command.command("restore")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the new home (default ZTCP_HOME); must not exist or be empty")
@click.option("--json", "as_json", is_flag=True, help="what was restored, as JSON")
def restore(directory: Path, target: Path | None, as_json: bool) -> None:
    """Check DIRECTORY like `verify`, then copy it into an empty home. Provide the master key
    (ZTCP_MASTER_KEY, or master.key in the home) before starting ztcp on it."""
    settings = load_settings()
    home = (target or settings.home).expanduser().resolve()
    report = _run(lambda: restore_backup(directory, home, verify_ledger=ledger_verifier(settings)))
    if as_json:
        click.echo(orjson.dumps({**report.as_dict(), "restored_to": str(home)}))
        return
    click.echo(f"restored {len(report.files)} files into {home}; the ledger of {report.ledger_size} events "
               "verified. Put the master key in place (ZTCP_MASTER_KEY or master.key, mode 0600) before "
               "starting ztcp.")

