"""Shared plumbing for benchmarks: machine facts, timing helpers, the results file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def rate(fn, n: int) -> float:
    """Calls per second of ``fn`` over ``n`` calls (after a short warm-up)."""
    for _ in range(min(200, n // 10 + 1)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def percentiles(samples_s: list[float]) -> dict:
    ordered = sorted(samples_s)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": ordered[len(ordered) // 2] * 1e3, "p90_ms": q[89] * 1e3, "p99_ms": q[98] * 1e3}


def result(name: str, value: float, unit: str, *, target: str | None = None, anchor: str | None = None,
           ok: bool | None = None, **extra) -> dict:
    row = {"name": name, "value": round(value, 3), "unit": unit}
    if target is not None:
        row["target"] = target
    if ok is not None:
        row["meets_target"] = ok
    if anchor is not None:
        row["anchor"] = anchor
    row.update(extra)
    return row


def write(area: str, rows: list[dict], *, quick: bool) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{area}.json"
    doc = {"benchmark": area, "quick": quick, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "results": rows}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


@contextlib.contextmanager
def postgres_cluster(*, fsync: bool = True) -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster (Debian's binaries, run as the postgres OS user when we are
    root), yielding its libpq URL, or None when no server is installed. ``fsync=True``: commits are
    flushed to disk, as a durability figure needs."""
    bins = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
                  key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not bins:
        yield None
        return
    bindir = bins[-1]

    def as_postgres(*args: str) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    base = Path(tempfile.mkdtemp(prefix="ztcp-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    try:
        init = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        if as_postgres(*init, *([] if fsync else ["--no-sync"])).returncode != 0:
            yield None
            return
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1" + ("" if fsync else " -c fsync=off")
        if as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w",
                       "start").returncode != 0:
            yield None
            return
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
