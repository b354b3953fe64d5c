"""Engines for the protected database (SQLAlchemy Core): SQLite in WAL mode, or PostgreSQL via psycopg."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine suited to concurrent readers/writers (``ztcp serve`` and CLI jobs share the DB)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
            cur.execute("PRAGMA busy_timeout=30000")
            # Rows rewritten as ciphertext (encrypt-table, re-encrypt) must not leave their old
            # plaintext in freed pages: zero deleted content.
            cur.execute("PRAGMA secure_delete=ON")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages of big tables stay cached
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is still shown without secrets
        return "<db url>"
