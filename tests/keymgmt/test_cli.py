"""`ztcp keys …` through the real click application (in process)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import keymgmt
from cli.main import ztcp


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, ztcp_home: Path) -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    r = runner.invoke(ztcp, list(args), catch_exceptions=False)
    assert r.exit_code == code, (r.output, r.stderr if hasattr(r, "stderr") else "")
    return r.output


def test_create_list_rotate_json(runner: CliRunner, ztcp_home: Path) -> None:
    out = json.loads(run(runner, "keys", "create", "sig", "--type", "ed25519", "--json"))
    assert out["name"] == "sig" and out["latest_version"] == 1
    assert (ztcp_home / "master.key").stat().st_mode & 0o777 == 0o600
    assert (ztcp_home / "keyring.sealed").stat().st_mode & 0o777 == 0o600
    assert json.loads(run(runner, "keys", "rotate", "sig", "--json"))["latest_version"] == 2
    listed = json.loads(run(runner, "keys", "list", "--json"))
    assert [(k["name"], k["type"], k["latest_version"]) for k in listed] == [("sig", "ed25519", 2)]
    run(runner, "keys", "create", "sig", "--type", "ed25519", code=1)
    run(runner, "keys", "rotate", "nope", code=1)
    run(runner, "keys", "create", "x", "--type", "rsa", code=1)  # click usage error: an input error (README)
    audit = json.loads(run(runner, "keys", "audit", "--json"))
    assert [e["type"] for e in audit] == ["key.create", "key.rotate"]
    assert all(e["actor"].startswith("os:") for e in audit)
    assert json.loads(run(runner, "keys", "audit", "--since", str(audit[0]["seq"]), "--json"))[0]["type"] == \
        "key.rotate"


def test_wrong_master_key_is_clear_and_overwrites_nothing(runner, ztcp_home, monkeypatch) -> None:
    monkeypatch.setenv("ZTCP_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    run(runner, "keys", "create", "kek1")
    ring = ztcp_home / "keyring.sealed"
    before = ring.read_bytes()
    monkeypatch.setenv("ZTCP_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    r = runner.invoke(ztcp, ["keys", "rotate", "kek1"])
    assert r.exit_code == 2
    assert "different master key" in r.output and "not modified" in r.output
    assert ring.read_bytes() == before
    monkeypatch.setenv("ZTCP_MASTER_KEY", "bad")
    r = runner.invoke(ztcp, ["keys", "list"])
    assert r.exit_code == 1 and "ZTCP_MASTER_KEY" in r.output


def test_table_commands(runner: CliRunner, tmp_path: Path, kit) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = keymgmt.make_engine(url)
    kit.create_people(engine, 40)
    out = json.loads(run(runner, "keys", "encrypt-table", "--db", url, "--table", "people", "--pk", "id",
                         "--columns", "national_id,phone", "--blind-index", "national_id", "--json"))
    assert out["rows_changed"] == 40 and out["rows_total"] == 40
    st = json.loads(run(runner, "keys", "status", "--db", url, "--table", "people", "--json"))
    assert st["plaintext_rows"] == 0 and sum(d["rows"] for d in st["rows_by_dek"]) == 40
    run(runner, "keys", "rotate", keymgmt.DEFAULT_KEK)
    r = runner.invoke(ztcp, ["keys", "retire", keymgmt.DEFAULT_KEK, "--min-decryption-version", "2",
                             "--db", url])
    assert r.exit_code == 2 and "table people: 1 data keys wrapped" in r.output and "people: 40 rows" in r.output
    assert json.loads(run(runner, "keys", "rewrap", "--db", url, "--json"))["rewrapped"] == 1
    assert json.loads(run(runner, "keys", "reencrypt", "--db", url, "--table", "people", "--json"))[
        "rows_changed"] == 40
    run(runner, "keys", "retire", keymgmt.DEFAULT_KEK, "--min-decryption-version", "2", "--db", url)
    v = json.loads(run(runner, "keys", "verify", "--db", url, "--table", "people", "--json"))
    assert (v["rows"], v["ok"], v["failed"]) == (40, 40, 0)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE people SET national_id_bidx = '1:00' WHERE id IN (3, 4)"))
    r = runner.invoke(ztcp, ["keys", "verify", "--db", url, "--table", "people", "--json"])
    assert r.exit_code == 3
    assert json.loads(r.output)["failures"] == {"blind_index_mismatch": 2}
    types = [e["type"] for e in json.loads(run(runner, "keys", "audit", "--json"))]
    for t in ("key.create", "key.rotate", "key.rewrap", "key.reencrypt",
              "key.retire", "key.bulk_decrypt"):
        assert t in types
    human = run(runner, "keys", "status", "--db", url, "--table", "people")
    assert "people" in human and "40" in human


def test_retire_checks_every_database_the_inventory_knows(runner: CliRunner, tmp_path: Path, kit,
                                                          ztcp_home: Path) -> None:
    # Issue #13 finding 10: the table was encrypted in another database than the default one; a
    # retire without --db used to check only the default and strand X's data keys.
    url = f"sqlite:///{tmp_path / 'x.db'}"
    kit.create_people(keymgmt.make_engine(url), 12)
    run(runner, "keys", "encrypt-table", "--db", url, "--table", "people", "--pk", "id", "--columns", "phone")
    run(runner, "keys", "rotate", keymgmt.DEFAULT_KEK)
    r = runner.invoke(ztcp, ["keys", "retire", keymgmt.DEFAULT_KEK, "--min-decryption-version", "2"])
    assert r.exit_code == 2, r.output
    assert f"database {url}, table people: 1 data keys wrapped under an older version" in r.output
    assert json.loads(run(runner, "keys", "list", "--json"))[0]["min_decryption_version"] == 1
    # A database the inventory knows but cannot reach is not skipped: retire refuses.
    run(runner, "keys", "rewrap", "--db", url)
    run(runner, "keys", "reencrypt", "--db", url, "--table", "people")
    (tmp_path / "x.db").rename(tmp_path / "moved.db")
    (tmp_path / "x.db").mkdir()  # the path now cannot be opened as a database
    r = runner.invoke(ztcp, ["keys", "retire", keymgmt.DEFAULT_KEK, "--min-decryption-version", "2"])
    assert r.exit_code == 2 and "cannot be checked" in r.output, r.output
    (tmp_path / "x.db").rmdir()
    (tmp_path / "moved.db").rename(tmp_path / "x.db")
    run(runner, "keys", "retire", keymgmt.DEFAULT_KEK, "--min-decryption-version", "2")
    assert (ztcp_home / "key-inventory.db").stat().st_mode & 0o777 == 0o600


def test_inventory_never_keeps_a_password(ztcp_home: Path) -> None:
    from keymgmt.inventory import KeyInventory

    inventory = KeyInventory(ztcp_home / "key-inventory.db")
    inventory.record("postgresql://ztcp:s3cret-pw@db.bureau:5432/protected", "people", "people", "data-kek")
    assert inventory.databases() == ["postgresql://ztcp@db.bureau:5432/protected"]
    assert b"s3cret-pw" not in (ztcp_home / "key-inventory.db").read_bytes()


def test_a_missing_transit_mount_is_named_with_the_way_out(runner, monkeypatch, bao_server) -> None:
    monkeypatch.setenv("ZTCP_VAULT_ADDR", bao_server.addr)
    monkeypatch.setenv("ZTCP_VAULT_TOKEN", bao_server.token)
    monkeypatch.setenv("ZTCP_VAULT_MOUNT", "never-mounted")
    r = runner.invoke(ztcp, ["keys", "create", "data-kek"])
    assert r.exit_code == 1, r.output
    assert "no transit secrets engine is mounted at 'never-mounted/'" in r.output
    assert "secrets enable -path=never-mounted transit" in r.output


def test_bad_table_input(runner: CliRunner, tmp_path: Path, kit) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    kit.create_people(keymgmt.make_engine(url), 2)
    r = runner.invoke(ztcp, ["keys", "encrypt-table", "--db", url, "--table", "people", "--pk", "id",
                             "--columns", "nope"])
    assert r.exit_code == 1 and "no column nope" in r.output
    r = runner.invoke(ztcp, ["keys", "status", "--db", url, "--table", "ghost"])
    assert r.exit_code == 1 and "not a registered" in r.output
    r = runner.invoke(ztcp, ["keys", "rewrap", "--db", "postgresql://u:secret@127.0.0.1/x"])
    assert r.exit_code == 1 and "password" in r.output and "secret" not in r.output


def test_vault_provider_from_settings(runner, monkeypatch, bao_server, transit_mount) -> None:
    monkeypatch.setenv("ZTCP_VAULT_ADDR", bao_server.addr)
    monkeypatch.setenv("ZTCP_VAULT_TOKEN", bao_server.token)
    monkeypatch.setenv("ZTCP_VAULT_MOUNT", transit_mount)
    run(runner, "keys", "create", "kek", "--type", "aes256-gcm96")
    listed = json.loads(run(runner, "keys", "list", "--json"))
    assert listed[0]["provider"] == "vault" and listed[0]["name"] == "kek"
    monkeypatch.setenv("ZTCP_VAULT_TOKEN", "wrong-token")
    r = runner.invoke(ztcp, ["keys", "rotate", "kek"])
    assert r.exit_code == 2 and "permission denied" in r.output


@pytest.mark.parametrize("cmd", ["list", "create", "rotate", "rewrap", "encrypt-table", "reencrypt", "status",
                                 "retire", "verify", "audit"])
def test_help(runner: CliRunner, cmd: str) -> None:
    assert "Usage" in run(runner, "keys", cmd, "--help")


def test_read_only_commands_create_no_keys(runner: CliRunner, tmp_path: Path, kit) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    kit.create_people(keymgmt.make_engine(url), 2)
    run(runner, "keys", "status", "--db", url, "--table", "people", code=1)
    assert json.loads(run(runner, "keys", "list", "--json")) == []
