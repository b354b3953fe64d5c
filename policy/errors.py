"""Exceptions of the policy lifecycle. Messages name files and revisions, never policy inputs."""

from __future__ import annotations


class PolicyError(Exception):
    """Base of every policy error; ``exit_code`` follows DESIGN §10."""

    exit_code = 1


class PackError(PolicyError):
    """A policy pack directory cannot be loaded (missing, unreadable, bad data file)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message if not self.problems else message + ":\n" + "\n".join(self.problems))
