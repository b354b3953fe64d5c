"""What can go wrong while composing the application, phrased for the operator who can fix it.

Each error carries the exit code the CLI documents (1 input/configuration, 2 refused, 3 integrity),
so ``cli`` turns it into one line without knowing the details.
"""

from __future__ import annotations


class ServerError(Exception):
    """Base class: a problem building or running the application."""

    exit_code = 1


class ConfigError(ServerError):
    """A setting is missing, malformed or inconsistent (the message names the variable, never a secret)."""


class DatabaseUnreachable(ServerError):
    """``ZTCP_DATABASE_URL`` does not answer at start: one line naming it without its password."""

    exit_code = 2

    def __init__(self, url: str, reason: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        from provenance.postgres_store import redact_dsn

        try:
            password = conninfo_to_dict(url).get("password")
        except Exception:  # noqa: BLE001 - an unparsable URL has no password to hide beyond redact_dsn's
            password = None
        if password:
            reason = reason.replace(str(password), "***")
        super().__init__(f"cannot reach the database {redact_dsn(url)} (ZTCP_DATABASE_URL): {reason}")
