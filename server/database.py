"""The shared database (``ZTCP_DATABASE_URL``) as ``ztcp serve`` sees it: reachable at start, and
what ``/readyz`` says about it."""

from __future__ import annotations

from typing import Any

from server.errors import DatabaseUnreachable
from server.settings import Settings


def display_url(url: str) -> str:
    """The URL as messages and ``/readyz`` show it: user, host, port, database, never the password."""
    from provenance.postgres_store import redact_dsn

    return redact_dsn(url)


def check_database(settings: Settings) -> None:
    """Before anything is built: the database answers, or one line naming it (no password), exit 2."""
    if not settings.database_url:
        return
    import psycopg

    from pdp.storage import pg_connect

    try:
        with pg_connect(settings.database_url, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnreachable(settings.database_url, text.removeprefix("connection failed: ")) from None


def probe(settings: Settings) -> dict[str, Any]:
    """``/readyz``: the database answers a query now (a connection of its own, closed at once)."""
    if not settings.database_url:
        return {"ok": True, "database": "sqlite (ZTCP_HOME)"}
    from pdp.storage import pg_connect

    with pg_connect(settings.database_url, autocommit=True) as conn:
        conn.execute("SELECT 1")
    return {"ok": True, "database": display_url(settings.database_url)}
