"""Backups of a ztcp home: consistent copies of every store, taken while `ztcp serve` runs.

The provenance ledger is copied by its own store (``LedgerStore.backup_to``: for the SQLite driver,
SQLite's online backup API in one step; for PostgreSQL, a SQLite ledger file written from one
snapshot), so the copy is one point of its sequence, whole batches only, while ``ztcp serve``
appends, and ``verify`` and ``restore`` need no database server. The other SQLite stores (decision
log, policy revisions, key audit, SIEM, protected tables when they live in the home) are copied with
the same API directly. Other files (the sealed keyring, registers, SIEM lists) are copied as they
are. The master key is
never copied: a backup holding both the sealed keyring and the key that opens it would be an
unsealed keyring. ``MANIFEST.json`` lists every file with its SHA-256, the ledger size and the
latest signed checkpoint, so a restore can be checked before it is trusted, and the copied ledger
is verified like ``ztcp audit verify`` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import provenance
from provenance.sqlite_store import SqliteLedgerStore
from provenance.store import LedgerStore
from server.settings import Settings

MANIFEST = "MANIFEST.json"
MASTER_KEY_FILE = "master.key"
LEDGER_FILE = "provenance.db"
_SQLITE_MAGIC = b"SQLite format 3\x00"
# Never copied: the key that unseals the keyring, lock files, and SQLite's side files (the online
# backup already folds the WAL into the copy).
_SKIP_SUFFIXES = (".lock", "-wal", "-shm", "-journal")


class BackupError(Exception):
    """A backup or restore that cannot be made or trusted. ``exit_code`` follows the README's exit codes."""

    exit_code = 1


class BackupDamaged(BackupError):
    """A file no longer matches the manifest, or the copied ledger does not verify."""

    exit_code = 3


@dataclass
class BackupReport:
    directory: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → {"sha256", "bytes", "kind"}
    excluded: dict[str, str] = field(default_factory=dict)  # name → why
    ledger_size: int | None = None
    checkpoint: str | None = None
    created_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "created_at": self.created_at, "files": self.files,
                "excluded": self.excluded, "ledger_size": self.ledger_size, "checkpoint": self.checkpoint}


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == _SQLITE_MAGIC


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _empty_target(target: Path, what: str) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{what} {target} exists and is not an empty directory; nothing was written")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)


def _copy_sqlite(src: Path, dst: Path) -> None:
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        dest = sqlite3.connect(dst)
        try:
            # One step, one read transaction: in WAL mode writers go on meanwhile, and the copy is the
            # database as of its start. (Stepwise copying restarts whenever another connection
            # writes, so a busy ledger would never finish.)
            source.backup(dest, pages=-1)
            dest.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no WAL beside it
        finally:
            dest.close()
    finally:
        source.close()


def _copy_ledger(store: LedgerStore, dst: Path) -> None:
    try:
        store.backup_to(dst)
    except provenance.ProvenanceError as exc:
        raise BackupError(f"cannot copy the ledger: {exc}") from None
    finally:
        store.close()


def create_backup(home: Path, target: Path, *, verify_ledger: Callable[[Path], tuple[int, str | None]],
                  progress: Callable[[str], None] = lambda name: None,
                  elsewhere: dict[str, str] | None = None,
                  ledger_store: Callable[[Path], LedgerStore] = SqliteLedgerStore,
                  ledger_source: LedgerStore | None = None) -> BackupReport:
    """Copy ``home`` into the new or empty directory ``target``; return what was copied.

    ``verify_ledger(path)`` opens the copied ledger, verifies it (raising on damage) and returns
    (size, latest checkpoint note); the composition root supplies it with the right keys.
    ``ledger_store(path)`` is the store over the home's ledger file, whose ``backup_to`` makes the
    copy (never opened for writing: ``ztcp serve`` may be appending to it). ``ledger_source``: the
    ledger lives elsewhere (PostgreSQL); its copy becomes the backup's ledger file, and a ledger
    file left in the home is not the ledger and is not copied.
    """
    if not home.is_dir():
        raise BackupError(f"no ztcp home at {home}")
    _empty_target(target, "backup directory")
    report = BackupReport(target, created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                          excluded=dict(elsewhere or {}))  # stores outside the home: their own tools
    for src in sorted(p for p in home.iterdir() if p.is_file()):
        name = src.name
        if name == MASTER_KEY_FILE:
            report.excluded[name] = "the master key is never backed up with the keyring it unseals; keep it apart"
            continue
        if name.endswith(_SKIP_SUFFIXES):
            continue
        if name == LEDGER_FILE and ledger_source is not None:
            report.excluded[name] = f"not the ledger: the ledger is in {ledger_source.location}, copied instead"
            continue
        progress(name)
        dst = target / name
        if name == LEDGER_FILE:
            _copy_ledger(ledger_store(src), dst)
            kind = "sqlite"
        elif _is_sqlite(src):
            _copy_sqlite(src, dst)
            kind = "sqlite"
        else:
            shutil.copyfile(src, dst)
            kind = "file"
        os.chmod(dst, 0o600)
        report.files[name] = {"kind": kind}
    if ledger_source is not None:
        progress(f"{LEDGER_FILE} from {ledger_source.location}")
        _copy_ledger(ledger_source, target / LEDGER_FILE)
        os.chmod(target / LEDGER_FILE, 0o600)
        report.files[LEDGER_FILE] = {"kind": "sqlite", "from": ledger_source.location}
    if LEDGER_FILE in report.files:
        progress(f"verifying {LEDGER_FILE}")
        report.ledger_size, report.checkpoint = verify_ledger(target / LEDGER_FILE)
    for name, meta in report.files.items():  # hashed last: opening the ledger copy to verify it may
        dst = target / name                   # switch its journal mode; contents are unchanged
        meta |= {"sha256": _sha256(dst), "bytes": dst.stat().st_size}
    manifest = {"format": 1, "ztcp": _version(), **report.as_dict()}
    manifest.pop("directory")
    fd = os.open(target / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return report


def check_backup(directory: Path, *, verify_ledger: Callable[[Path], tuple[int, str | None]]) -> BackupReport:
    """Every file the manifest lists is present and unchanged, and the ledger copy verifies."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        raise BackupError(f"{directory} has no {MANIFEST}: not a ztcp backup") from None
    except (ValueError, KeyError, TypeError):
        raise BackupDamaged(f"{directory / MANIFEST} is not a readable manifest") from None
    for name, meta in sorted(files.items()):
        path = directory / name
        if Path(name).name != name:
            raise BackupDamaged(f"manifest names a file outside the backup: {name!r}")
        if not path.is_file():
            raise BackupDamaged(f"{name} is listed in the manifest but missing")
        if _sha256(path) != meta.get("sha256"):
            raise BackupDamaged(f"{name} does not match its SHA-256 in the manifest (changed or damaged)")
    report = BackupReport(directory, files=files, excluded=manifest.get("excluded", {}),
                          created_at=manifest.get("created_at", ""))
    if LEDGER_FILE in files:
        report.ledger_size, report.checkpoint = verify_ledger(directory / LEDGER_FILE)
        if manifest.get("ledger_size") is not None and report.ledger_size != manifest["ledger_size"]:
            raise BackupDamaged(f"the ledger holds {report.ledger_size} events, the manifest says "
                                f"{manifest['ledger_size']}")
    return report


def restore_backup(directory: Path, home: Path, *, verify_ledger: Callable[[Path], tuple[int, str | None]]
                   ) -> BackupReport:
    """Check the backup, then copy it into the new or empty directory ``home``."""
    report = check_backup(directory, verify_ledger=verify_ledger)
    _empty_target(home, "ztcp home")
    for name in report.files:
        shutil.copyfile(directory / name, home / name)
        os.chmod(home / name, 0o600)
    return report


def _version() -> str:
    try:
        return version("ztcp")
    except PackageNotFoundError:
        return "unknown"


def ledger_verifier(settings: Settings):  # noqa: ANN202 - a small closure factory
    """Verify a copied ledger with this installation's checkpoint keys: (size, latest note)."""
    from server.ledger import ledger_from_settings  # the ledger module needs keys; backups of other stores do not

    def verify(path: Path) -> tuple[int, str | None]:
        ledger = ledger_from_settings(settings, path=path)
        try:
            report = provenance.verify_ledger(ledger)
            cp = ledger.latest_checkpoint()
        except provenance.IntegrityError as exc:
            raise BackupDamaged(f"the ledger copy does not verify ({exc.kind}"
                                f"{'' if exc.seq is None else f' at seq {exc.seq}'}): {exc}") from None
        finally:
            ledger.close()
        return report.size, cp.note if cp else None

    return verify
