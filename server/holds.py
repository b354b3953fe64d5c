"""Legal holds: a citizen (by citizen_ref) or a case whose records retention must not delete.

Kept in ``ZTCP_HOME/legal_holds.db`` (SQLite, 0600), or in PostgreSQL (``ztcp_legal_holds``) when
``ZTCP_DATABASE_URL`` is set, so every replica's leader sees the same holds. A citizen is only
ever stored as its citizen_ref (a national ID given to the CLI is turned into one first). Holds are
released, never deleted: who placed and released one, and when, stays on record.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contracts.national_id import CITIZEN_REF_PATTERN
from server.errors import ConfigError, ServerError
from server.settings import Settings

FILENAME = "legal_holds.db"
KINDS = ("citizen", "case")
_CASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")


class HoldsUnavailable(ServerError):
    """The holds cannot be read: retention refuses to run (it could delete what a hold protects)."""

    exit_code = 2


class HoldNotFound(ServerError):
    exit_code = 1


@dataclass(frozen=True)
class Hold:
    hold_id: str
    kind: str
    subject: str  # a citizen_ref or a case id
    reason: str
    placed_by: str
    placed_at: float
    released_by: str | None = None
    released_at: float | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"active": self.active}


def check_subject(kind: str, subject: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"a hold is on a citizen or a case, not {kind!r}")
    if kind == "citizen" and not re.fullmatch(CITIZEN_REF_PATTERN, subject):
        raise ConfigError("a citizen hold takes a citizen_ref (cr_ and 52 base32 characters)")
    if kind == "case" and not _CASE.fullmatch(subject):
        raise ConfigError("a case id is 1-128 letters, digits and _ . : / -")


_COLUMNS = "hold_id, kind, subject, reason, placed_by, placed_at, released_by, released_at"
_DDL = ("CREATE TABLE IF NOT EXISTS ztcp_legal_holds (hold_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
        "subject TEXT NOT NULL, reason TEXT NOT NULL, placed_by TEXT NOT NULL, placed_at DOUBLE PRECISION NOT NULL, "
        "released_by TEXT, released_at DOUBLE PRECISION)")


class HoldStore:
    """The holds, in SQLite (``path``) or PostgreSQL (``url``)."""

    def __init__(self, *, path: Path | None = None, url: str | None = None) -> None:
        self.path, self.url = path, url
        with self._conn() as (db, _):
            db.execute(_DDL)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[tuple[Any, str]]:
        try:
            if self.url:
                from pdp.storage import pg_connect

                pg = pg_connect(self.url, autocommit=True)
                try:
                    yield pg, "%s"
                finally:
                    pg.close()
                return
            assert self.path is not None
            if not self.path.exists():
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                yield db, "?"
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            raise HoldsUnavailable(f"legal holds unavailable ({type(exc).__name__}): retention refused") from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                raise HoldsUnavailable(f"legal holds unavailable ({type(exc).__name__}): retention refused") from None
            raise

    def add(self, kind: str, subject: str, reason: str, by: str, now: float | None = None) -> Hold:
        check_subject(kind, subject)
        if not reason.strip() or len(reason) > 500:
            raise ConfigError("a hold needs a reason (1-500 characters), e.g. the court order's reference")
        hold = Hold(str(uuid.uuid4()), kind, subject, reason.strip(), by, now if now is not None else time.time())
        with self._conn() as (db, p):
            db.execute(f"INSERT INTO ztcp_legal_holds ({_COLUMNS}) VALUES ({', '.join([p] * 8)})",  # noqa: S608
                       (hold.hold_id, hold.kind, hold.subject, hold.reason, hold.placed_by, hold.placed_at, None, None))
        return hold

    def list(self, *, active_only: bool = True) -> list[Hold]:
        where = " WHERE released_at IS NULL" if active_only else ""
        with self._conn() as (db, _):
            rows = db.execute(f"SELECT {_COLUMNS} FROM ztcp_legal_holds{where} ORDER BY placed_at").fetchall()  # noqa: S608
        return [Hold(*r) for r in rows]

    def release(self, hold_id: str, by: str, now: float | None = None) -> Hold:
        with self._conn() as (db, p):
            cur = db.execute(f"UPDATE ztcp_legal_holds SET released_by = {p}, released_at = {p} "  # noqa: S608
                             f"WHERE hold_id = {p} AND released_at IS NULL",
                             (by, now if now is not None else time.time(), hold_id))
            if cur.rowcount != 1:
                raise HoldNotFound(f"no active hold {hold_id}")
        return next(h for h in self.list(active_only=False) if h.hold_id == hold_id)


def hold_store(settings: Settings) -> HoldStore:
    if settings.database_url:
        return HoldStore(url=settings.database_url)
    return HoldStore(path=settings.ensure_home() / FILENAME)


@dataclass(frozen=True)
class HoldSet:
    """The active holds as a test records are put to."""

    citizens: frozenset[str]
    cases: frozenset[str]

    @classmethod
    def of(cls, holds: list[Hold]) -> HoldSet:
        return cls(frozenset(h.subject for h in holds if h.kind == "citizen"),
                   frozenset(h.subject for h in holds if h.kind == "case"))

    def __bool__(self) -> bool:
        return bool(self.citizens or self.cases)

    def matcher(self) -> Callable[[str | None, str | None], bool]:
        citizens, cases = self.citizens, self.cases
        return lambda ref, case: (ref is not None and ref in citizens) or (case is not None and case in cases)
