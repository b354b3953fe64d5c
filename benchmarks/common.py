"""Shared plumbing for benchmarks: machine facts, timing helpers, the results file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
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
