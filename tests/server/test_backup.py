"""`ztcp backup`: consistent copies taken while the ledger is being written, checked, restored."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import contracts
from cli.main import ztcp
from server.bootstrap import system_keys
from server.ledger import ledger_from_settings
from server.settings import load_settings

CREF = "cr_" + "B" * 52


def _events(n: int, start: int = 0) -> list[contracts.ProvenanceEvent]:
    return [contracts.ProvenanceEvent(type="pii.read", actor="emp-9", citizen_ref=CREF, dataset="claims",
                                       record_id=str(start + i), fields=["claim_status"], purpose="benefit_review",
                                       time=datetime.now(UTC)) for i in range(n)]


def _invoke(*args: str, env: dict | None = None):  # noqa: ANN202
    return CliRunner().invoke(ztcp, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def home(ztcp_home: Path) -> Path:
    settings = load_settings()
    system_keys(settings).ensure_all()
    with ledger_from_settings(settings) as led:
        for i in range(0, 500, 50):
            led.append(_events(50, start=i))
        led.checkpoint()
    (ztcp_home / "siem.yml").write_text("protected_citizens: []\n", encoding="utf-8")
    return ztcp_home


def test_a_backup_taken_during_appends_is_consistent_and_restores(home: Path, tmp_path: Path) -> None:
    stop, writing = threading.Event(), threading.Event()

    def writer() -> None:  # `ztcp serve` keeps recording while the admin backs up
        with ledger_from_settings(load_settings()) as led:
            i = 500
            while not stop.is_set():
                led.append(_events(20, start=i))
                writing.set()
                i += 20

    t = threading.Thread(target=writer)
    t.start()
    assert writing.wait(30)
    try:
        res = _invoke("backup", "create", str(tmp_path / "bk"), "--json")
    finally:
        stop.set()
        t.join()
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["ledger_size"] >= 500 and report["checkpoint"]
    assert "master.key" in report["excluded"] and not (tmp_path / "bk" / "master.key").exists()
    copied = {p.name for p in (tmp_path / "bk").iterdir()}
    assert {"provenance.db", "keyring.sealed", "siem.yml", "MANIFEST.json"} <= copied
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "bk").iterdir())
    assert not list((tmp_path / "bk").glob("*-wal"))

    verified = _invoke("backup", "verify", str(tmp_path / "bk"))
    assert verified.exit_code == 0 and "intact" in verified.output

    # Restore into a fresh home; with the master key supplied apart, that home verifies and traces.
    new_home = tmp_path / "restored"
    assert _invoke("backup", "restore", str(tmp_path / "bk"), "--to", str(new_home)).exit_code == 0
    env = {"ZTCP_HOME": str(new_home), "ZTCP_MASTER_KEY": (home / "master.key").read_text().strip()}
    out = _invoke("audit", "verify", "--json", env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["size"] == report["ledger_size"]
    with ledger_from_settings(load_settings(home=new_home, master_key=env["ZTCP_MASTER_KEY"])) as led:
        assert len(led.citizen_entries(CREF)) == report["ledger_size"]


def test_a_changed_file_or_a_rewritten_ledger_is_caught(home: Path, tmp_path: Path) -> None:
    bk = tmp_path / "bk"
    assert _invoke("backup", "create", str(bk)).exit_code == 0
    lists = bk / "siem.yml"
    lists.write_text("protected_citizens: [cr_SOMEONE]\n", encoding="utf-8")
    res = _invoke("backup", "verify", str(bk))
    assert res.exit_code == 3 and "siem.yml does not match" in res.output

    # An editor who also fixes up the manifest is still caught by the ledger's own signatures.
    lists.unlink()
    manifest = json.loads((bk / "MANIFEST.json").read_text())
    del manifest["files"]["siem.yml"]
    db = sqlite3.connect(bk / "provenance.db")
    body = db.execute("SELECT body FROM entries WHERE seq = 7").fetchone()[0]
    db.execute("UPDATE entries SET body = ? WHERE seq = 7", (body.replace(b"emp-9", b"emp-8"),))
    db.commit()
    db.close()
    import hashlib

    manifest["files"]["provenance.db"]["sha256"] = hashlib.sha256((bk / "provenance.db").read_bytes()).hexdigest()
    (bk / "MANIFEST.json").write_text(json.dumps(manifest))
    res = _invoke("backup", "verify", str(bk))
    assert res.exit_code == 3 and "ledger copy does not verify" in res.output and "seq 7" in res.output
    res = _invoke("backup", "restore", str(bk), "--to", str(tmp_path / "never"))
    assert res.exit_code == 3 and not (tmp_path / "never").exists()


def test_targets_must_be_new_or_empty(home: Path, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    res = _invoke("backup", "create", str(busy))
    assert res.exit_code == 1 and "not an empty directory" in res.output
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert _invoke("backup", "create", str(tmp_path / "bk")).exit_code == 0
    res = _invoke("backup", "restore", str(tmp_path / "bk"), "--to", str(home))  # over a live home: no
    assert res.exit_code == 1 and "not an empty directory" in res.output
    res = _invoke("backup", "verify", str(busy))
    assert res.exit_code == 1 and "not a ztcp backup" in res.output


def test_the_ledger_is_copied_by_its_store(home: Path, tmp_path: Path) -> None:
    """The ledger goes through its store's backup operation (the seam a PostgreSQL driver fills);
    a ledger the store cannot copy stops the backup with a message, not a traceback."""
    from provenance.sqlite_store import SqliteLedgerStore
    from server.backup import BackupError, create_backup, ledger_verifier

    copied: list[Path] = []

    class Observed(SqliteLedgerStore):  # the real driver, watched
        def backup_to(self, path: Path) -> None:
            copied.append(path)
            super().backup_to(path)

    settings = load_settings()
    report = create_backup(home, tmp_path / "bk", verify_ledger=ledger_verifier(settings), ledger_store=Observed)
    assert copied == [tmp_path / "bk" / "provenance.db"] and report.ledger_size == 500
    assert report.files["provenance.db"]["kind"] == "sqlite"

    (home / "provenance.db").write_bytes(b"not a database at all" * 100)
    for side in ("-wal", "-shm"):
        (home / f"provenance.db{side}").unlink(missing_ok=True)
    with pytest.raises(BackupError, match="cannot copy the ledger"):
        create_backup(home, tmp_path / "bk2", verify_ledger=ledger_verifier(settings))
