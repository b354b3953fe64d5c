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
