"""Where a gateway read's time goes: py-spy samples of ``ztcp serve`` under wrk, summarised by stage.

Run by ``python -m benchmarks.bench_gateway --profile`` (needs ``py-spy``, a dev tool:
``pip install py-spy``). py-spy samples the server process from outside, every thread, with
``--gil``: only the thread holding the GIL is sampled, so each sample is interpreter time that no
other request could use — the resource a one-process server runs out of. Time spent with the GIL
released (fsync, SQLite's C code, libsodium) is not in these samples; the bench's wall-clock
figures hold it.

Each sample is charged to the innermost stage its stack passes through (``STAGES``, first match
from the leaf up), so "decide: engine" excludes the signature, and "HTTP framework" is what
uvicorn, Starlette, FastAPI and anyio do outside our code.
"""

from __future__ import annotations

from collections import Counter

RATE_HZ = 250

# (stage, substrings of a frame "function (path:line)"), checked from the leaf frame upwards.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("ledger: durable append (SQLite + fsync, the group-commit leader)", ("append_prepared (",)),
    ("ledger: canonical JSON + leaf hash (caller's thread)", ("prepare (provenance/ledger.py",)),
    ("ledger: provenance event built + validated", ("_event (keymgmt/gate.py",)),
    ("ledger: Recorder (queue, wait, hand-off)", ("provenance/recorder.py",)),
    ("gate: decryption (DEK cache, AES-GCM)", ("_decrypt_row (", "prefetch (keymgmt")),
    ("gate: row fetch (SQLAlchemy)", ("fetch_row (",)),
    ("gate: decision token verify", ("verify_decision_token (",)),
    ("decide: engine (regorus)", ("pdp/engine.py",)),
    ("decide: decision token signature", ("pdp/tokens.py",)),
    ("decide: decision-log hand-off", ("pdp/decision_log.py",)),
    ("decide: signals", ("pdp/signals.py",)),
    ("decide: subject token verify", ("pdp/identity.py",)),
    ("decide: other (input, Decision model, metrics)", ("pdp/point.py",)),
    ("gate: other checks, masks", ("keymgmt/gate.py",)),
    ("gateway: context resolve (device, zone, site)", ("gateway/context.py", "pdp/devices.py")),
    ("gateway: DecisionRequest build + validation, record fetch, checks", ("gateway/gateway.py",)),
    ("gateway: route (fields, caller)", ("gateway/routes.py",)),
    ("auth: subject token verify (route dependency)", ("pdp/http_auth.py",)),
    ("HTTP framework (uvicorn, Starlette, FastAPI, anyio)", ("uvicorn/", "starlette/", "fastapi/", "anyio/",
                                                            "httptools", "uvloop")),
]


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def _stage(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, needles in STAGES:
            if any(n in frame for n in needles):
                return stage
    return "other threads (SIEM, checkpoint timer, stores' writers, GC)"


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/wt-perf/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def parse(raw: str) -> list[tuple[list[str], int]]:
    out = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((_frames(stack), int(count)))
    return out


def summarise(raw: str, http: dict, anchor: dict, load: str, top: int = 25) -> str:
    samples = parse(raw)
    total = sum(c for _, c in samples) or 1
    seconds = total / RATE_HZ
    reads = max(1, int(http["total"]))
    per_read = lambda n: n / RATE_HZ / reads * 1e6  # noqa: E731 - µs of GIL time per answered read
    stages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    for frames, count in samples:
        stages[_stage(frames)] += count
        own[_short(frames[-1])] += count
        for f in {_short(f) for f in frames}:
            cumulative[f] += count
    wall_us = 1e6 / http["rps"] if http["rps"] else float("nan")
    lines = [
        "Gateway read over HTTP: GET /v1/records/insured_persons/{id}?fields=name,address (issue #16)",
        "python -m benchmarks.bench_gateway --profile: ztcp serve (1 process, uvloop + httptools) under wrk,",
        f"32 connections, 16 officers; py-spy --gil at {RATE_HZ} Hz over the measured run (GIL-holding thread only).",
        f"load average {load}",
        "",
        f"answered reads: {reads:,} at {http['rps']:,.0f} req/s (wall {wall_us:,.0f} µs per read), p50 "
        f"{http['p50_ms']:.1f} ms, p99 {http['p99_ms']:.1f} ms",
        f"GIL held: {seconds:.1f} s of samples = {per_read(total):,.0f} µs per read "
        f"→ ceiling {reads / seconds if seconds else float('nan'):,.0f} reads/s on one interpreter",
        f"anchor (same run, in process, 1 caller): decide + gate + durable record {anchor['gated']:,.0f}/s "
        f"({anchor['gated_cpu_us']:,.0f} µs CPU each incl. background threads); decide alone {anchor['decide']:,.0f}/s",
        "",
        "µs of GIL time per read, by stage (innermost stage on the stack):",
    ]
    for stage, count in stages.most_common():
        lines.append(f"  {per_read(count):8,.0f} µs  {count / total:6.1%}  {stage}")
    lines += ["", f"top {top} functions by own time (leaf frame):"]
    for name, count in own.most_common(top):
        lines.append(f"  {per_read(count):8,.0f} µs  {count / total:6.1%}  {name}")
    lines += ["", "where the top own-time functions are called from (three frames up):"]
    for name, _ in own.most_common(8):
        callers: Counter[str] = Counter()
        for frames, count in samples:
            if _short(frames[-1]) == name:
                callers[" < ".join(_short(f).split(" (")[0] for f in reversed(frames[-4:-1]))] += count
        for chain, count in callers.most_common(3):
            lines.append(f"  {per_read(count):8,.0f} µs  {name.split(' (')[0]} < {chain}")
    lines += ["", f"top {top} functions by cumulative time (on the stack):"]
    for name, count in cumulative.most_common(top):
        lines.append(f"  {per_read(count):8,.0f} µs  {count / total:6.1%}  {name}")
    return "\n".join(lines) + "\n"
