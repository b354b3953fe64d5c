"""`ztcp serve` and the CLI as their own processes, as deployed, for the tests that need them."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx


def ztcp(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One CLI command in a process of its own (``env`` carries ZTCP_HOME and the rest)."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def wait_ready(base: str, server: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until ``base``/readyz answers 200; a server that exits or never gets there fails the test with
    the tail of what it printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            err = server.stderr.read() if server.stderr is not None else ""
            raise AssertionError(f"ztcp serve exited with {server.returncode}:\n{err[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"ztcp serve was not ready at {base} within {timeout:.0f} s")
