"""`ztcp keys …`: key custodian commands (docs/design.md, Flows: rotate).

The provider comes from Settings: ``ZTCP_VAULT_ADDR`` (+ ``ZTCP_VAULT_TOKEN`` or AppRole
``ZTCP_VAULT_ROLE_ID`` / ``ZTCP_VAULT_SECRET_ID``) selects Vault/OpenBao transit, otherwise the local
keyring under ``ZTCP_HOME`` sealed by ``ZTCP_MASTER_KEY`` or ``ZTCP_HOME/master.key``. Secrets are
never taken from argv: a ``--db`` URL that carries a password is refused (use PGPASSWORD/.pgpass).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

import keymgmt
from cli.errors import EXIT_INTEGRITY, CliFailure
from cli.tables import print_table
from keymgmt.inventory import INVENTORY_FILE as KEY_INVENTORY_FILE
from keymgmt.inventory import KeyInventory, redact
from server.keys import build_provider
from server.settings import Settings, load_settings

KEK = keymgmt.DEFAULT_KEK
BLIND = keymgmt.DEFAULT_BLIND_INDEX_KEY


def _actor() -> str:
    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):
        return "os:unknown"


def _audit(settings: Settings) -> keymgmt.KeyAuditLog:
    return keymgmt.KeyAuditLog(keymgmt.default_audit_path(settings.ensure_home()))


def _db_url(settings: Settings, db: str | None) -> str:
    if db is None:
        return settings.protected_db_url
    try:
        import sqlalchemy as sa

        url = sa.make_url(db)
    except Exception:  # noqa: BLE001 - any parse failure is a usage error
        raise CliFailure("--db is not a valid database URL") from None
    if url.password:
        raise CliFailure(
            "--db must not carry a password (argv is visible to other users); "
            "use PGPASSWORD / ~/.pgpass or ZTCP_PROTECTED_DB"
        )
    return db


class _Ctx:
    def __init__(self) -> None:
        self.settings = load_settings()
        self._provider: keymgmt.KeyProvider | None = None

    @property
    def provider(self) -> keymgmt.KeyProvider:
        if self._provider is None:
            self._provider = build_provider(self.settings)
        return self._provider

    def table(self, db: str | None, table: str, kek: str,
              spec: keymgmt.TableSpec | None = None) -> keymgmt.EncryptedTable:
        """The protected table; keys are created only when a new spec is being applied (encrypt-table)."""
        engine = keymgmt.make_engine(_db_url(self.settings, db))
        create = spec is not None
        if create:
            self.ensure_key(kek, "aes256-gcm96")
        env = keymgmt.Envelope(self.provider, engine, kek)
        if spec is None:
            spec = keymgmt.load_spec(engine, table)
        # Remember where data is encrypted under this KEK: `keys retire` checks every such database.
        self.inventory().record(_db_url(self.settings, db), spec.table, spec.dataset, kek)
        blind = None
        if spec.blind_index:
            if create:
                self.ensure_key(BLIND, "hmac")
            blind = keymgmt.BlindIndexKeys(self.provider, BLIND, length=spec.bi_length)
        return keymgmt.EncryptedTable(engine, spec, env, blind)

    def inventory(self) -> KeyInventory:
        return KeyInventory(self.settings.ensure_home() / KEY_INVENTORY_FILE)

    def retire_engines(self, db: str | None) -> dict[str, Any]:
        """Every database to check before retiring: the default one, each the inventory knows, and --db."""
        default = self.settings.protected_db_url
        urls = {redact(default): default}
        for known in self.inventory().databases():
            urls.setdefault(known, known)  # without a password: libpq finds it (PGPASSFILE) or retire refuses
        if db is not None:
            urls[redact(db)] = _db_url(self.settings, db)
        return {label: keymgmt.make_engine(url) for label, url in urls.items()}

    def ensure_key(self, name: str, type_: str) -> None:
        if not self.provider.exists(name):
            info = self.provider.ensure(name, type_)
            _audit(self.settings).record(type="key.create", actor=_actor(), key_name=name,
                                         key_version=info.latest_version, reason=f"type={type_}")


pass_ctx = click.make_pass_decorator(_Ctx, ensure=True)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "– rows/s", style="progress.data.speed")


@contextmanager
def _progress(
    label: str, enabled: bool
) -> Iterator[tuple[Callable[[int], None], Callable[[int, int], None]]]:
    console = Console(stderr=True)
    prog = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not (enabled and console.is_terminal), transient=False,
    )
    task = prog.add_task(label, total=None)

    def advance(n: int) -> None:
        prog.advance(task, n)

    def on_total(total: int, already: int) -> None:
        prog.update(task, total=total, completed=already)

    with prog:
        yield advance, on_total


def _emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, default=str, indent=2))
    else:
        human()


def _info_dict(k: keymgmt.KeyInfo) -> dict:
    return k.model_dump(mode="json")


@click.group("keys")
def command() -> None:
    """Field-encryption keys: list, create, rotate, rewrap, encrypt tables, re-encrypt, retire, verify."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@pass_ctx
def list_cmd(ctx: _Ctx, as_json: bool) -> None:
    """List keys with their versions and minimum decryption version."""
    keys = ctx.provider.list()

    def human() -> None:
        t = Table("name", "type", "latest", "min decrypt", "created", "rotated",
                  title=f"keys ({ctx.provider.provider_name})")
        for k in keys:
            t.add_row(k.name, k.type, str(k.latest_version), str(k.min_decryption_version),
                      k.created_at.isoformat(timespec="seconds"),
                      k.rotated_at.isoformat(timespec="seconds") if k.rotated_at else "–")
        print_table(t)

    _emit(as_json, [_info_dict(k) for k in keys], human)


@command.command("create")
@click.argument("name")
@click.option("--type", "key_type", type=click.Choice(list(keymgmt.KEY_TYPES)), default="aes256-gcm96",
              show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def create_cmd(ctx: _Ctx, name: str, key_type: str, as_json: bool) -> None:
    """Create a key (KEK: aes256-gcm96, blind index: hmac, signing: ed25519)."""
    info = ctx.provider.create(name, key_type)
    _audit(ctx.settings).record(type="key.create", actor=_actor(), key_name=name,
                                key_version=info.latest_version, reason=f"type={key_type}")
    _emit(as_json, _info_dict(info), lambda: click.echo(f"created {name} ({key_type}) version 1"))


@command.command("rotate")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def rotate_cmd(ctx: _Ctx, name: str, as_json: bool) -> None:
    """Add a new version; new writes use it (new data keys), old versions still decrypt."""
    v = ctx.provider.rotate(name)
    _audit(ctx.settings).record(type="key.rotate", actor=_actor(), key_name=name, key_version=v)
    _emit(as_json, {"name": name, "latest_version": v},
          lambda: click.echo(f"rotated {name}: latest version {v}"))


@command.command("rewrap")
@click.option("--db", help="protected database URL (default: ZTCP_PROTECTED_DB)")
@click.option("--kek", default=KEK, show_default=True, help="key-encryption key")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def rewrap_cmd(ctx: _Ctx, db: str | None, kek: str, as_json: bool) -> None:
    """Re-wrap every data key in the key table under the newest KEK version (transit rewrap, batched)."""
    engine = keymgmt.make_engine(_db_url(ctx.settings, db))
    env = keymgmt.Envelope(ctx.provider, engine, kek)
    with _progress("rewrap", not as_json) as (advance, _):
        done, total = env.rewrap(progress=advance)
    latest = ctx.provider.info(kek).latest_version
    _audit(ctx.settings).record(type="key.rewrap", actor=_actor(), key_name=kek, key_version=latest,
                                count=done)
    _emit(as_json, {"kek": kek, "latest_version": latest, "rewrapped": done, "candidates": total},
          lambda: click.echo(f"rewrapped {done} of {total} data keys to {kek} v{latest}"))


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


def _job_json(r: keymgmt.JobResult) -> dict:
    return {"job": r.kind, "table": r.table, "rows_changed": r.rows_changed,
            "rows_pending_at_start": r.rows_pending_at_start, "rows_total": r.rows_total,
            "seconds": round(r.seconds, 3), "rows_per_second": round(r.rows_per_second, 1)}


@command.command("encrypt-table")
@click.option("--db", help="protected database URL (default: ZTCP_PROTECTED_DB)")
@click.option("--table", required=True)
@click.option("--pk", required=True, help="primary key column")
@click.option("--columns", required=True, help="comma-separated columns to encrypt")
@click.option("--blind-index", "blind_index", default="", help="comma-separated columns to index")
@click.option("--citizen-ref-column", default=None, help="column holding citizen_ref (checked on reads)")
@click.option("--dataset", default=None, help="dataset name in decisions (default: the table name)")
@click.option("--bi-length", default=8, show_default=True, type=click.IntRange(4, 32),
              help="blind-index bytes kept (see keymgmt.blind_index for the collision trade-off)")
@click.option("--kek", default=KEK, show_default=True)
@click.option("--batch", default=2000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def encrypt_table_cmd(ctx: _Ctx, db: str | None, table: str, pk: str, columns: str, blind_index: str,
                      citizen_ref_column: str | None, dataset: str | None, bi_length: int, kek: str,
                      batch: int, as_json: bool) -> None:
    """Encrypt an existing plaintext table in place (resumable, idempotent, safe to kill -9)."""
    spec = keymgmt.TableSpec(
        table=table, pk=pk, columns=_split(columns), blind_index=_split(blind_index),
        citizen_ref_column=citizen_ref_column, dataset=dataset or "", bi_length=bi_length,
    )
    et = ctx.table(db, table, kek, spec)
    with _progress(f"encrypt {table}", not as_json) as (advance, on_total):
        r = keymgmt.encrypt_table(et, batch=batch, progress=advance, on_total=on_total,
                                  audit=_audit(ctx.settings), actor=_actor())
    _emit(as_json, _job_json(r), lambda: click.echo(
        f"encrypted {r.rows_changed} rows of {table} ({r.rows_total - r.rows_pending_at_start} were done "
        f"already) in {r.seconds:.1f} s, {r.rows_per_second:,.0f} rows/s"))


@command.command("reencrypt")
@click.option("--db", help="protected database URL (default: ZTCP_PROTECTED_DB)")
@click.option("--table", required=True)
@click.option("--kek", default=KEK, show_default=True)
@click.option("--batch", default=2000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def reencrypt_cmd(ctx: _Ctx, db: str | None, table: str, kek: str, batch: int, as_json: bool) -> None:
    """Move rows to the current data key and blind-index key (resumable, idempotent, safe to kill -9)."""
    et = ctx.table(db, table, kek)
    with _progress(f"reencrypt {table}", not as_json) as (advance, on_total):
        r = keymgmt.reencrypt(et, batch=batch, progress=advance, on_total=on_total,
                              audit=_audit(ctx.settings), actor=_actor())
    _emit(as_json, _job_json(r), lambda: click.echo(
        f"re-encrypted {r.rows_changed} rows of {table} in {r.seconds:.1f} s"))


@command.command("status")
@click.option("--db", help="protected database URL (default: ZTCP_PROTECTED_DB)")
@click.option("--table", required=True)
@click.option("--kek", default=KEK, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status_cmd(ctx: _Ctx, db: str | None, table: str, kek: str, as_json: bool) -> None:
    """Rows per data key and KEK version, plaintext rows left, blind-index versions, job journal."""
    st = keymgmt.table_status(ctx.table(db, table, kek))

    def human() -> None:
        c = Console()
        c.print(f"[bold]{st['table']}[/] (dataset {st['dataset']}): {st['rows']} rows, "
                f"{st['plaintext_rows']} still plaintext")
        t = Table("data key", "rows", "KEK version", "made under", "state")
        for d in st["rows_by_dek"]:
            t.add_row(d["dek_id"], str(d["rows"]), str(d["kek_version"]), str(d["origin_kek_version"]),
                      d["state"])
        print_table(t, c)
        for col, versions in st["blind_index_versions"].items():
            c.print(f"blind index {col}: " + ", ".join(f"v{v}: {n}" for v, n in versions.items()))
        for j in st["jobs"]:
            c.print(f"job {j['kind']}: {j['status']}, {j['rows_done']} rows, runs {j['runs']}")

    _emit(as_json, st, human)


@command.command("retire")
@click.argument("name")
@click.option("--min-decryption-version", "min_version", required=True, type=int)
@click.option("--db", help="another database to check too (the default one and every database the key "
                           "inventory knows are always checked)")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def retire_cmd(ctx: _Ctx, name: str, min_version: int, db: str | None, as_json: bool) -> None:
    """Raise the minimum decryption version; refused while data keys or rows depend on older versions."""
    engines = ctx.retire_engines(db)
    try:
        keymgmt.retire(ctx.provider, name, min_version, engines, _audit(ctx.settings), _actor())
    finally:
        for engine in engines.values():
            engine.dispose()
    _emit(as_json, {"name": name, "min_decryption_version": min_version},
          lambda: click.echo(f"retired versions of {name} below {min_version}"))


@command.command("verify")
@click.option("--db", help="protected database URL (default: ZTCP_PROTECTED_DB)")
@click.option("--table", required=True)
@click.option("--kek", default=KEK, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def verify_cmd(ctx: _Ctx, db: str | None, table: str, kek: str, as_json: bool) -> None:
    """Every row decrypts and its blind index matches; exit 3 on any failure (plaintext never shown)."""
    et = ctx.table(db, table, kek)
    with _progress(f"verify {table}", not as_json) as (advance, on_total):
        r = keymgmt.verify_table(et, progress=advance, on_total=on_total, audit=_audit(ctx.settings),
                                 actor=_actor())
    data = {"table": r.table, "rows": r.rows, "ok": r.ok, "plaintext": r.plaintext, "failed": r.failed,
            "failures": r.failures, "failed_pks": [str(p) for p in r.failed_pks]}
    _emit(as_json, data, lambda: click.echo(
        f"{r.table}: {r.rows} rows, {r.ok} intact, {r.plaintext} plaintext, {r.failed} failed"
        + (f" {r.failures}" if r.failures else "")))
    if r.failed:
        raise click.exceptions.Exit(EXIT_INTEGRITY)


@command.command("audit")
@click.option("--since", default=0, show_default=True, type=int, help="only events after this seq")
@click.option("--limit", default=100, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit_cmd(ctx: _Ctx, since: int, limit: int, as_json: bool) -> None:
    """Key audit events (what the SIEM reads)."""
    events = list(_audit(ctx.settings).iter_since(since, limit))

    def human() -> None:
        t = Table("seq", "time", "type", "actor", "key", "v", "dataset", "count", "reason")
        for seq, e in events:
            t.add_row(str(seq), e.time.isoformat(timespec="seconds"), e.type, e.actor, e.key_name or "",
                      str(e.key_version or ""), e.dataset or "", str(e.count or ""), e.reason or "")
        print_table(t)

    _emit(as_json, [{"seq": s, **e.model_dump(mode="json")} for s, e in events], human)
