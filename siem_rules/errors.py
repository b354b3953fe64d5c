"""Exceptions of the SIEM package. Each carries ``exit_code`` for the CLI (1 input, 2 refused, 3 integrity)."""

from __future__ import annotations


class SiemError(Exception):
    """Base of every SIEM error; the message is safe to show (no event values beyond references)."""

    exit_code = 1


class RuleError(SiemError):
    """A rule file is missing metadata, is not valid Sigma, or uses a field our schemas do not have."""

    def __init__(self, rule: str, problem: str) -> None:
        super().__init__(f"rule {rule}: {problem}")
        self.rule = rule
        self.problem = problem


class EventError(SiemError):
    """An input event does not follow its documented schema (see siem_rules/README.md)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class FixtureError(SiemError):
    """A rule's fixture file is malformed (not: a fixture that fails, which is a test result)."""


class AlertNotFound(SiemError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert with id {alert_id}")
        self.alert_id = alert_id


class ExportUnsupported(SiemError):
    """A rule has no form in an export target (a Python analytic, or a construct the backend lacks);
    the export lists it as skipped with this reason."""


class AlertStoreUnavailable(SiemError):
    """The alert store (PostgreSQL with ``ZTCP_DATABASE_URL``) cannot be reached now: the error's type
    and first line, never the connection string. The console answers 503; the scheduler retries."""

    exit_code = 2
