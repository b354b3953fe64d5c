"""The ztcp web console: auditor trace, SOC alerts, policy lifecycle and key status, server-rendered.

Mounted by the composition root (``cli/app.py``) with :func:`mount_console`. Every page asks the
PDP as its signed-in user; personal-data views are recorded in the provenance ledger.
"""

from cli.console.app import mount_console
from cli.console.config import ConsoleSettings

__all__ = ["ConsoleSettings", "mount_console"]
