"""Errors of ``ztcp demo``: each carries the CLI exit code (1 usage/input, 3 integrity)."""

from __future__ import annotations


class DemoError(Exception):
    """Base of the demo's errors."""

    exit_code = 1


class AlreadySeeded(DemoError):
    """The home already holds a seeded bureau (re-run with ``--force`` to rebuild it)."""


class IncidentMissed(DemoError):
    """A planted incident raised no alert of the rule meant to catch it."""


class ReadsUnrecorded(DemoError):
    """Plaintext reads and ledger events disagree: the one guarantee is broken."""

    exit_code = 3
