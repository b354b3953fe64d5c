"""`ztcp serve --workers N`: N worker processes on one listening socket, kept alive by a supervisor.

Every worker is a whole ``ztcp serve`` (its own ``Runtime``, lease and integrator candidacy) on the
shared database: to the cluster it is one more replica, so the decision signals, the ledger's
sequence and the timed jobs' lease work across workers exactly as across hosts. Hence N > 1 only
with ``ZTCP_DATABASE_URL`` (SQLite stores are one process's: refused, naming the variable).

* **One socket.** The supervisor binds and listens before forking; the workers inherit it and all
  accept from its queue. A connection waiting in the queue when a worker dies is taken by another
  (with ``SO_REUSEPORT`` each worker would own a queue, lost with it).
* **Forked, not spawned,** from a supervisor that has started no thread and opened no database
  session (``check_database`` closes its connection), so a child inherits nothing shared but the
  socket; each child builds everything itself.
* **A dead worker is replaced** (``kill -9``, a crash) at once. A worker that exits by itself with
  an error within ``MIN_UPTIME`` s of its start (a wrong master key, a bad setting: it printed its
  one line) would only fail again: the supervisor stops the others and exits with that code.
* **SIGTERM / SIGINT**: passed to every worker (uvicorn drains its requests, the worker flushes its
  logs), then the supervisor exits 0; a worker still running after ``STOP_TIMEOUT`` s is killed.
  A supervisor killed with -9 takes its workers with it (``PR_SET_PDEATHSIG``): none serves on
  unsupervised, holding the port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("ztcp.workers")

MIN_UPTIME = 10.0  # a worker failing sooner than this after its start is a configuration problem
STOP_TIMEOUT = 30.0  # uvicorn's graceful shutdown is 10 s; flushing the logs takes less than the rest
RESTART_BACKOFF = 0.5  # between replacing workers that keep dying of signals (a loop would spin)

Work = Callable[[Callable[[str], None]], None]  # the worker's body, given how to talk


@dataclass
class _Worker:
    index: int
    pid: int
    started: float


class Supervisor:
    """Runs ``work`` in ``n`` forked workers until SIGTERM/SIGINT; returns the exit code."""

    def __init__(self, n: int, work: Work, say: Callable[[str], None] = print) -> None:
        self.n = n
        self.work = work
        self.say = say
        self.workers: dict[int, _Worker] = {}
        self.restarts = 0
        self._stopping = False
        self._first = True  # only the first worker's first start prints where it listens

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.n):
                self._spawn(index)
            self.say(f"ztcp supervisor {os.getpid()}: {self.n} workers (pids "
                     f"{', '.join(str(w.pid) for w in self.workers.values())})")
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_stop(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            self._stopping = True
            self._deadline = time.monotonic() + STOP_TIMEOUT
            self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):  # ended between the wait and the kill
                os.kill(pid, sig)

    def _spawn(self, index: int) -> None:
        say = self.say if self._first else _quiet
        self._first = False
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            os._exit(_child(self.work, say, supervisor))
        self.workers[pid] = _Worker(index, pid, time.monotonic())

    def _watch(self) -> int:
        code = 0
        last_restart = 0.0
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if self._stopping and time.monotonic() > self._deadline:
                    log.warning("workers still running %.0f s after SIGTERM: killing them", STOP_TIMEOUT)
                    self._signal_all(signal.SIGKILL)
                    self._deadline = float("inf")
                time.sleep(0.05)
                continue
            worker = self.workers.pop(pid, None)
            if worker is None or self._stopping:
                continue
            uptime = time.monotonic() - worker.started
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0 and uptime < MIN_UPTIME:
                # It said why on stderr (one line); starting it again would say it again, forever.
                code = os.WEXITSTATUS(status)
                self._stopping = True
                self._deadline = time.monotonic() + STOP_TIMEOUT
                self._signal_all(signal.SIGTERM)
                continue
            how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
            log.warning("worker %d (pid %d) ended (%s) after %.1f s; starting another", worker.index, pid, how, uptime)
            if time.monotonic() - last_restart < RESTART_BACKOFF:
                time.sleep(RESTART_BACKOFF)
            last_restart = time.monotonic()
            self.restarts += 1
            self._spawn(worker.index)
        return code


def _quiet(_line: str) -> None:
    return None


def _die_with_supervisor(supervisor: int) -> None:
    """SIGTERM this worker when its supervisor dies (even by ``kill -9``): orphaned workers would
    keep the port and serve on, unsupervised, and a new ``ztcp serve`` could not bind it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # another kernel: the supervisor's own SIGTERM still reaches us
        return
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _child(work: Work, say: Callable[[str], None], supervisor: int) -> int:
    """The worker's life; its exit code (the CLI's: 0 ok, the error's ``exit_code`` otherwise)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own; until then, the default
    _die_with_supervisor(supervisor)
    try:
        work(say)
        return 0
    except BaseException as exc:  # noqa: BLE001 - the worker's last word, then os._exit
        code = getattr(exc, "exit_code", None)
        if isinstance(exc, Exception) and isinstance(code, int):  # a package's error: one line, as the CLI says it
            print(f"ztcp: error: {exc}", file=sys.stderr)
            return code
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            return 0 if isinstance(exc, KeyboardInterrupt) else int(exc.code or 0)
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
