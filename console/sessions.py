"""Server-side console sessions: random ids given to the browser, only their hashes kept here.

A session expires after ``idle`` seconds without a request or ``absolute`` seconds after sign-in,
whichever comes first. Each carries its CSRF token. Pending OIDC logins (state, PKCE verifier,
nonce) live here too, for a few minutes, keyed by the hash of their browser cookie.

Two drivers of one contract (:class:`SessionStoreLike`; one conformance suite,
``tests/console/test_session_conformance.py``): :class:`SessionStore` in this process's memory
(one ``ztcp serve``; sessions end with the process), and
:class:`console.pg_sessions.PostgresSessionStore` with ``ZTCP_DATABASE_URL``, shared by every
replica and sealed so that the database alone signs nobody in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class Session:
    subject: str
    name: str
    roles: tuple[str, ...]
    org_unit: str | None
    token: str  # the subject token the PDP verifies on every page
    token_expires: float
    mode: str  # "dev" | "oidc"
    auth_method: str = "password"
    id_token: str | None = None  # OIDC: the hint for signing out at the IdP too
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    # A store's own handle on the stored session (PostgreSQL: the raw id and its hash), for save();
    # never itself stored, shown or compared.
    _handle: tuple[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), str(presented).encode())


@dataclass
class PendingLogin:
    state: str
    verifier: str
    nonce: str
    created: float = field(default_factory=time.time)


class SessionStoreLike(Protocol):
    idle: float
    absolute: float

    def create(self, session: Session) -> str: ...
    def get(self, raw: str | None, *, now: float | None = None) -> Session | None: ...
    def save(self, session: Session) -> None: ...
    def drop(self, raw: str | None) -> None: ...
    def __len__(self) -> int: ...
    def begin_login(self) -> tuple[str, PendingLogin]: ...
    def finish_login(self, raw: str | None, state: str | None) -> PendingLogin | None: ...
    def close(self) -> None: ...


class SessionStore:
    """The in-memory driver: one process's sessions."""

    PENDING_SECONDS = 600

    def __init__(self, idle_seconds: float, absolute_seconds: float, max_sessions: int = 10_000) -> None:
        self.idle = idle_seconds
        self.absolute = absolute_seconds
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._pending: dict[str, PendingLogin] = {}
        self._lock = threading.Lock()

    def _expired(self, s: Session, now: float) -> bool:
        return now - s.last_seen > self.idle or now - s.created > self.absolute

    def _sweep(self, now: float) -> None:
        for k in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[k]
        for k in [k for k, p in self._pending.items() if now - p.created > self.PENDING_SECONDS]:
            del self._pending[k]

    def create(self, session: Session) -> str:
        """Store ``session``; return the raw id for the cookie (never stored)."""
        raw = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._sweep(now)
            if len(self._sessions) >= self.max_sessions:  # bounded memory: drop the oldest
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
                del self._sessions[oldest]
            self._sessions[_digest(raw)] = session
        return raw

    def get(self, raw: str | None, *, now: float | None = None) -> Session | None:
        if not raw:
            return None
        now = time.time() if now is None else now
        key = _digest(raw)
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                return None
            if self._expired(s, now):
                del self._sessions[key]
                return None
            s.last_seen = now
            return s

    def drop(self, raw: str | None) -> None:
        if raw:
            with self._lock:
                self._sessions.pop(_digest(raw), None)

    def save(self, session: Session) -> None:
        """Sessions are changed in place in memory: nothing to write back."""

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        """Nothing to release."""

    # -- OIDC logins in flight ---------------------------------------------------------------
    def begin_login(self) -> tuple[str, PendingLogin]:
        raw = secrets.token_urlsafe(32)
        pending = PendingLogin(state=secrets.token_urlsafe(24), verifier=secrets.token_urlsafe(64),
                               nonce=secrets.token_urlsafe(24))
        with self._lock:
            self._sweep(time.time())
            self._pending[_digest(raw)] = pending
        return raw, pending

    def finish_login(self, raw: str | None, state: str | None) -> PendingLogin | None:
        """The pending login of this browser if ``state`` matches; single use either way."""
        if not raw or not state:
            return None
        with self._lock:
            pending = self._pending.pop(_digest(raw), None)
        if pending is None or time.time() - pending.created > self.PENDING_SECONDS:
            return None
        return pending if hmac.compare_digest(pending.state.encode(), state.encode()) else None
