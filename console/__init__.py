"""The ztcp web console: auditor trace, SOC alerts, policy lifecycle and key status, server-rendered.

Mounted by the composition root (``server/app.py``) with :func:`mount_console`. Every page asks the
PDP as its signed-in user; personal-data views are recorded in the provenance ledger.
"""

from console.app import mount_console
from console.config import ConsoleSettings

__all__ = ["ConsoleSettings", "mount_console"]
