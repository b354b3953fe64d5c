"""Console sessions in PostgreSQL (``ZTCP_DATABASE_URL``): a session begun on one replica works on all.

The same contract as :class:`console.sessions.SessionStore` (the in-memory driver of a single
process); ``tests/console/test_session_conformance.py`` runs one suite against both.

What the database holds, and why a copy of it signs nobody in:

* the row's key is SHA-256 of the browser's random session id, as in memory: the id itself is never
  stored;
* the session (subject token, OIDC id token, CSRF token, roles) is sealed with AES-256-GCM under a
  key derived from that same random id (HMAC-SHA256(id, label)), bound to the row's key. Only the
  browser holding the cookie can have its session opened; the database, its backups and its
  administrators see who is signed in since when (the subject is inside the seal too: only times
  are in the clear) and nothing they could present;
* pending OIDC logins (state, PKCE verifier, nonce) likewise, keyed and sealed by the login cookie;
  finishing one deletes it in the same statement, so it is single-use across replicas.

Idle and absolute expiry are checked against the row's times. ``last_seen`` is written back at most
every ``touch_seconds`` (not on every page), which is the precision of the idle limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from console.sessions import PendingLogin, Session, _digest
from pdp.storage import Migration, PgSession, migrate_pg, pg_connect, unavailable

if TYPE_CHECKING:
    import psycopg

COMPONENT = "console_sessions"
_LABEL = b"ztcp console session seal v1"
_FIELDS = ("subject", "name", "roles", "org_unit", "token", "token_expires", "mode", "auth_method", "id_token",
           "csrf")

MIGRATIONS = (
    Migration(1, "console_sessions: sealed sessions by the hash of their browser id, with their times", (
        """CREATE TABLE console_sessions (
          id_hash TEXT PRIMARY KEY,
          sealed BYTEA NOT NULL,
          created DOUBLE PRECISION NOT NULL,
          last_seen DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen)",
    )),
    Migration(2, "console_pending_logins: OIDC logins in flight, so the IdP may return to any replica", (
        """CREATE TABLE console_pending_logins (
          id_hash TEXT PRIMARY KEY,
          sealed BYTEA NOT NULL,
          created DOUBLE PRECISION NOT NULL)""",
    )),
)


def _seal(raw: str, key_id: str, doc: dict[str, Any]) -> bytes:
    nonce = os.urandom(12)
    key = hmac.new(raw.encode(), _LABEL, hashlib.sha256).digest()
    return nonce + AESGCM(key).encrypt(nonce, json.dumps(doc).encode(), key_id.encode())


def _unseal(raw: str, key_id: str, sealed: bytes) -> dict[str, Any] | None:
    key = hmac.new(raw.encode(), _LABEL, hashlib.sha256).digest()
    try:
        doc: dict[str, Any] = json.loads(AESGCM(key).decrypt(sealed[:12], sealed[12:], key_id.encode()))
    except (InvalidTag, ValueError):
        return None  # a row that does not open under this id: not this browser's session
    return doc


class PostgresSessionStore:
    """Console sessions shared by every replica (see the module notes)."""

    PENDING_SECONDS = 600
    touch_seconds = 10.0

    def __init__(self, url: str, idle_seconds: float, absolute_seconds: float, max_sessions: int = 10_000) -> None:
        import psycopg

        self.idle = idle_seconds
        self.absolute = absolute_seconds
        self.max_sessions = max_sessions
        try:
            conn = pg_connect(url)
        except psycopg.Error as exc:
            raise unavailable(exc) from exc
        try:
            migrate_pg(conn, COMPONENT, MIGRATIONS)
        except psycopg.Error as exc:
            raise unavailable(exc) from exc
        finally:
            conn.close()
        self._db = PgSession(url, autocommit=True)

    def __repr__(self) -> str:
        return "PostgresSessionStore(<ZTCP_DATABASE_URL>)"

    def _run(self, sql: str, args: tuple = (), *, fetch: bool = True) -> list[tuple]:
        def go(conn: psycopg.Connection) -> list[tuple]:
            cur = conn.execute(sql, args)
            return cur.fetchall() if fetch and cur.description else []

        return self._db.run(go)

    # -- sessions -------------------------------------------------------------------------------
    def create(self, session: Session) -> str:
        """Store ``session``; return the raw id for the cookie (never stored)."""
        raw = secrets.token_urlsafe(32)
        key_id = _digest(raw)
        now = time.time()
        self._sweep(now)
        (count,) = self._run("SELECT count(*) FROM console_sessions")[0]
        if count >= self.max_sessions:  # bounded: drop the least recently seen
            self._run("DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions "
                      "ORDER BY last_seen LIMIT %s)", (count - self.max_sessions + 1,), fetch=False)
        self._run("INSERT INTO console_sessions (id_hash, sealed, created, last_seen) VALUES (%s, %s, %s, %s)",
                  (key_id, _seal(raw, key_id, self._doc(session)), session.created, session.last_seen), fetch=False)
        session._handle = (raw, key_id)  # for save(); never stored
        return raw

    @staticmethod
    def _doc(session: Session) -> dict[str, Any]:
        return {name: getattr(session, name) for name in _FIELDS}

    def get(self, raw: str | None, *, now: float | None = None) -> Session | None:
        if not raw:
            return None
        now = time.time() if now is None else now
        key_id = _digest(raw)
        rows = self._run("SELECT sealed, created, last_seen FROM console_sessions WHERE id_hash = %s", (key_id,))
        if not rows:
            return None
        sealed, created, last_seen = rows[0]
        if now - last_seen > self.idle or now - created > self.absolute:
            self._run("DELETE FROM console_sessions WHERE id_hash = %s", (key_id,), fetch=False)
            return None
        doc = _unseal(raw, key_id, bytes(sealed))
        if doc is None:
            return None
        doc["roles"] = tuple(doc["roles"])
        session = Session(**doc, created=created, last_seen=now)
        session._handle = (raw, key_id)
        if now - last_seen >= self.touch_seconds:
            self._run("UPDATE console_sessions SET last_seen = greatest(last_seen, %s) WHERE id_hash = %s",
                      (now, key_id), fetch=False)
        return session

    def save(self, session: Session) -> None:
        """Write back a session changed in place (a re-minted token, new roles)."""
        handle = session._handle
        if handle is None:
            return
        raw, key_id = handle
        self._run("UPDATE console_sessions SET sealed = %s WHERE id_hash = %s",
                  (_seal(raw, key_id, self._doc(session)), key_id), fetch=False)

    def drop(self, raw: str | None) -> None:
        if raw:
            self._run("DELETE FROM console_sessions WHERE id_hash = %s", (_digest(raw),), fetch=False)

    def __len__(self) -> int:
        return int(self._run("SELECT count(*) FROM console_sessions")[0][0])

    def _sweep(self, now: float) -> None:
        self._run("DELETE FROM console_sessions WHERE last_seen < %s OR created < %s",
                  (now - self.idle, now - self.absolute), fetch=False)
        self._run("DELETE FROM console_pending_logins WHERE created < %s", (now - self.PENDING_SECONDS,),
                  fetch=False)

    # -- OIDC logins in flight ---------------------------------------------------------------------
    def begin_login(self) -> tuple[str, PendingLogin]:
        raw = secrets.token_urlsafe(32)
        pending = PendingLogin(state=secrets.token_urlsafe(24), verifier=secrets.token_urlsafe(64),
                               nonce=secrets.token_urlsafe(24))
        key_id = _digest(raw)
        self._sweep(time.time())
        doc = {"state": pending.state, "verifier": pending.verifier, "nonce": pending.nonce}
        self._run("INSERT INTO console_pending_logins (id_hash, sealed, created) VALUES (%s, %s, %s)",
                  (key_id, _seal(raw, key_id, doc), pending.created), fetch=False)
        return raw, pending

    def finish_login(self, raw: str | None, state: str | None) -> PendingLogin | None:
        """The pending login of this browser if ``state`` matches; single use either way (and across
        replicas: the row is deleted by the statement that reads it)."""
        if not raw or not state:
            return None
        key_id = _digest(raw)
        rows = self._run("DELETE FROM console_pending_logins WHERE id_hash = %s RETURNING sealed, created", (key_id,))
        if not rows:
            return None
        doc = _unseal(raw, key_id, bytes(rows[0][0]))
        if doc is None or time.time() - rows[0][1] > self.PENDING_SECONDS:
            return None
        pending = PendingLogin(**doc, created=rows[0][1])
        return pending if hmac.compare_digest(pending.state.encode(), state.encode()) else None

    def close(self) -> None:
        self._db.close()
