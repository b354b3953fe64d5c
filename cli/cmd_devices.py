"""`ztcp devices …`: the inventory of the bureau's enrolled devices and their posture.

The gateway takes a device's posture from a signed assertion or from this inventory, never from a
request header; an enrolled device is named by a device certificate or by the trusted proxy.
Changing the inventory needs an operator token with role ``device_admin`` and records who did it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from cli.operator import current_operator, token_option
from cli.tables import print_table
from contracts.decision import Posture
from pdp.devices import INVENTORY_FILE, DeviceInventory, InventoryRecord
from server.settings import Settings, load_settings

ADMIN_ROLE = "device_admin"


def _inventory(settings: Settings) -> DeviceInventory:
    return DeviceInventory(settings.ensure_home() / INVENTORY_FILE)


def _show(records: list[InventoryRecord], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], ensure_ascii=False, indent=2))
        return
    table = Table("device", "managed", "compliant", "EDR", "disk enc.", "patch age (d)", "registered (UTC)",
                  "by", "revoked (UTC)")
    for r in records:
        p = r.posture
        table.add_row(r.device_id, _yn(r.managed), _yn(r.compliant), _yn(p.edr_running), _yn(p.disk_encrypted),
                      "" if p.patch_age_days is None else str(p.patch_age_days), r.registered_at, r.registered_by,
                      r.revoked_at or "")
    print_table(table)


def _yn(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


@click.group("devices")
def command() -> None:
    """The device inventory: enrolled devices and their posture (register, list, revoke, import)."""


@command.command("register")
@click.argument("device_id")
@click.option("--managed/--unmanaged", default=True, show_default=True, help="enrolled in the bureau's MDM")
@click.option("--compliant/--noncompliant", default=True, show_default=True, help="passes the posture baseline")
@click.option("--edr/--no-edr", "edr", default=None, help="EDR agent running")
@click.option("--disk-encrypted/--disk-unencrypted", "disk", default=None, help="full-disk encryption on")
@click.option("--patch-age-days", type=click.IntRange(0, 36500), default=None, help="days since last patch")
@click.option("--json", "as_json", is_flag=True)
@token_option
def register(device_id: str, managed: bool, compliant: bool, edr: bool | None, disk: bool | None,
             patch_age_days: int | None, as_json: bool, token: str | None) -> None:
    """Enrol DEVICE_ID (or update its posture; a revoked device is re-enrolled)."""
    settings = load_settings()
    operator = current_operator(settings, token, ADMIN_ROLE)
    record = _inventory(settings).register(
        device_id, managed=managed, compliant=compliant, actor=operator.id,
        posture=Posture(edr_running=edr, disk_encrypted=disk, patch_age_days=patch_age_days))
    _show([record], as_json)


@command.command("revoke")
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True)
@token_option
def revoke(device_id: str, as_json: bool, token: str | None) -> None:
    """Revoke DEVICE_ID: from now on it has no posture (its certificate still names it)."""
    settings = load_settings()
    operator = current_operator(settings, token, ADMIN_ROLE)
    _show([_inventory(settings).revoke(device_id, actor=operator.id)], as_json)


@command.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@token_option
def import_cmd(csv_file: Path, token: str | None) -> None:
    """Enrol every row of CSV_FILE (device_id,managed,compliant[,baseline_ok,edr_running,disk_encrypted,
    patch_age_days]); all or nothing."""
    settings = load_settings()
    operator = current_operator(settings, token, ADMIN_ROLE)
    count = _inventory(settings).import_csv(csv_file, actor=operator.id)
    click.echo(f"{count} device(s) enrolled from {csv_file}")


@command.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """The inventory, revoked devices included."""
    _show(list(_inventory(load_settings()).records()), as_json)
