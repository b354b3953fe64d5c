"""Where data is encrypted: every database and table ztcp has encrypted, under which KEK.

`ztcp keys retire` must see *every* data key wrapped under a KEK, not only those in the database it
was pointed at: after ``keys encrypt-table --db X``, retiring without ``--db`` used to check only
the default database and let X's data keys become undecryptable. Each table job records here the
database (its URL with any password removed: the inventory holds no secret) and the table; retire
checks them all and refuses while any cannot be checked or still depends on an older version.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

INVENTORY_FILE = "key-inventory.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS encrypted_tables (
    database TEXT NOT NULL,        -- SQLAlchemy URL without its password
    table_name TEXT NOT NULL,
    dataset TEXT NOT NULL,
    kek_name TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (database, table_name, kek_name)
);
"""


def redact(url: str) -> str:
    """The URL as the inventory keeps it: never with a password."""
    return sa.make_url(url).render_as_string(hide_password=True).replace(":***@", "@")


@dataclass(frozen=True)
class EncryptedTableEntry:
    database: str
    table_name: str
    dataset: str
    kek_name: str
    first_seen: str
    last_seen: str


class KeyInventory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._local = threading.local()
        self._db().executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def record(self, database_url: str, table_name: str, dataset: str, kek_name: str,
               now: float | None = None) -> None:
        when = datetime.fromtimestamp(time.time() if now is None else now, UTC).isoformat().replace("+00:00", "Z")
        self._db().execute(
            "INSERT INTO encrypted_tables VALUES (?,?,?,?,?,?) ON CONFLICT(database, table_name, kek_name) "
            "DO UPDATE SET last_seen=excluded.last_seen, dataset=excluded.dataset",
            (redact(database_url), table_name, dataset, kek_name, when, when))

    def entries(self, kek_name: str | None = None) -> Iterator[EncryptedTableEntry]:
        sql = "SELECT * FROM encrypted_tables"
        args: tuple[str, ...] = ()
        if kek_name is not None:
            sql += " WHERE kek_name = ?"
            args = (kek_name,)
        for row in self._db().execute(sql + " ORDER BY database, table_name", args):
            yield EncryptedTableEntry(*row)

    def databases(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT DISTINCT database FROM encrypted_tables ORDER BY 1")]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
