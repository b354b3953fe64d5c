"""PDP benchmark: raw engine evaluation vs in-process decide vs HTTP, in one run.

- raw engine: regorus evaluating the default pack on a permit input (the anchor);
- in-process decide: token verification (cached) + signals + policy + decision token + log submit,
  with the decision log and signal history on SQLite (the default) and on PostgreSQL
  (``ZTCP_DATABASE_URL``, a throwaway local cluster), alternated in the same run;
- replica visibility: an observation made by one signal history, until another on the same
  PostgreSQL database has applied it (write-behind commit + NOTIFY + tail);
- HTTP: `ztcp serve` in its own process, load from this process (asyncio, keep-alive connections).
Targets (DESIGN §8): in-process ≥ 10,000/s per core; HTTP ≥ 2,500 req/s on 2 cores, p99 ≤ 10 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.common import percentiles, rate, result, write
from contracts.decision import DecisionRequest
from pdp.calendar import BusinessCalendar
from pdp.decision_log import DecisionLog
from pdp.engine import create_engine
from pdp.identity import JwtVerifier, StaticKeySource
from pdp.issuer import DevIssuer
from pdp.point import ActivePolicy, DecisionPoint, build_input
from pdp.signals import SignalHistory
from pdp.tokens import DecisionTokenSigner
from policy import load_pack

CITIZEN = "cr_SAMPLE" + "A" * 45 + "B"


def request_doc(token: str) -> dict:
    return {
        "subject_token": token,
        "device": {"id": "dev-1", "managed": True, "compliant": True},
        "context": {"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter",
                    "geo": {"lat": 25.03, "lon": 121.56}},
        "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                     "citizen_ref": CITIZEN, "fields": ["name", "address", "bank_account"]},
        "action": "read",
        "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"},
    }


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*args: str) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@contextlib.contextmanager
def _postgres() -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster with default durability (Debian binaries, run as the postgres OS
    user when we are root), as benchmarks/bench_keymgmt.py starts one; None when it cannot start."""
    if not (PG_BIN / "initdb").exists():
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="ztcp-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    try:
        if _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "--no-sync").returncode != 0:
            yield None
            return
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
        if _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"),
                        "-w", "start").returncode != 0:
            yield None
            return
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _stores(kind: str, tmp: Path, database_url: str | None) -> tuple[DecisionLog, SignalHistory]:
    if kind == "sqlite":
        return DecisionLog(tmp / "decisions.db"), SignalHistory(tmp / "signals.db")
    from pdp.pg_stores import PostgresDecisionStore, PostgresSignalStore

    assert database_url
    return DecisionLog(PostgresDecisionStore(database_url)), SignalHistory(store=PostgresSignalStore(database_url))


def in_process(n: int, database_url: str | None = None, rounds: int = 2) -> dict[str, float]:
    """Decisions per second: raw engine, and decide on each store kind (best of ``rounds`` passes,
    alternated so both see the same machine)."""
    pack = load_pack()
    issuer = DevIssuer(Ed25519PrivateKey.generate(), "https://idp.bench", "ztcp")
    verifier = JwtVerifier(StaticKeySource(issuer.jwks), "https://idp.bench", "ztcp")
    engine = create_engine(pack, "regorus", revision="bench")
    calendar = BusinessCalendar.from_config(pack.data.get("ztcp", {}).get("config", {}).get("calendar"))
    token = issuer.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True, ttl_seconds=3600)
    req = DecisionRequest.model_validate(request_doc(token))
    subject = verifier.verify_subject(token)
    out: dict[str, float] = {}
    kinds = ("sqlite", "postgresql") if database_url else ("sqlite",)
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for kind in kinds:
                log, history = _stores(kind, _fresh(Path(tmp) / f"{kind}-{round_}"), database_url)
                point = DecisionPoint(verifier=verifier, signer=DecisionTokenSigner(Ed25519PrivateKey.generate(), "b"),
                                      log=log, history=history, active=ActivePolicy(engine, calendar))
                if "raw" not in out:
                    input_doc = build_input(subject, req, history.compute(subject, req, time.time(), calendar),
                                            time.time(), calendar)
                    out["raw"] = rate(lambda: engine.evaluate(input_doc), n)  # noqa: B023 - used at once
                effect = point.decide(req).effect
                assert effect in ("permit", "step_up"), effect
                cpu = time.process_time()
                decide = rate(lambda: point.decide(req), n)  # noqa: B023
                # CPU of the whole process (request path and the stores' writer/tail threads) per decision:
                # steadier than the wall rate on a shared machine, and it counts the background work too.
                cpu_us = (time.process_time() - cpu) / (n + min(200, n // 10 + 1)) * 1e6
                body = request_doc(token)  # the same, parsing the JSON body each time as the HTTP path does
                parsed = rate(lambda: point.decide(DecisionRequest.model_validate(body)), n)  # noqa: B023
                out[kind] = max(out.get(kind, 0.0), decide)
                out[f"{kind}_cpu_us"] = min(out.get(f"{kind}_cpu_us", float("inf")), cpu_us)
                out[f"{kind}_parsed"] = max(out.get(f"{kind}_parsed", 0.0), parsed)
                assert log.flush(60) and history.flush(60)  # everything decided was stored
                point.close()
                log.close()
                history.close()
                print(f"  round {round_ + 1} {kind}: decide {decide:,.0f}/s ({cpu_us:,.0f} µs CPU each), "
                      f"with parsing {parsed:,.0f}/s", flush=True)
    return out


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def replica_visibility(database_url: str, samples: int = 300) -> dict[str, float]:
    """Milliseconds from an observation on one replica's history to its being applied on another's."""
    from pdp.pg_stores import PostgresSignalStore

    a = SignalHistory(store=PostgresSignalStore(database_url))
    b = SignalHistory(store=PostgresSignalStore(database_url))
    delays = []
    try:
        for i in range(samples):
            before = b.applied_remote
            t = time.perf_counter()
            a.observe_row((time.time(), f"emp-{i % 50}", "dev-1", None, "insured_persons", 25.0, 121.5, "permit",
                           "insured_persons/r-1/read"))
            while b.applied_remote == before:
                time.sleep(0.0002)
            delays.append(time.perf_counter() - t)
            time.sleep(0.003)
    finally:
        a.close()
        b.close()
    return percentiles(delays)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(base: str, caller: str, body: dict, total: int, concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {caller}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            queue.get_nowait()
            t = time.perf_counter()
            r = await client.post("/v1/decisions", json=body, headers=headers)
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*[worker(client) for _ in range(4)])  # warm-up connections
        for _ in range(concurrency * 2):
            queue.put_nowait(0)
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, errors


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ZTCP_BENCH_CALLER")
wrk.body = io.open(os.getenv("ZTCP_BENCH_BODY")):read("*a")
"""


def _wrk(base: str, caller: str, body: dict, seconds: int, concurrency: int) -> tuple[float, dict, int]:
    """wrk (C, one thread) as the load generator: it leaves the other core to the server."""
    import json
    import re

    with tempfile.TemporaryDirectory() as tmp:
        script, payload = Path(tmp) / "post.lua", Path(tmp) / "body.json"
        script.write_text(_WRK_SCRIPT)
        payload.write_text(json.dumps(body))
        env = {**os.environ, "ZTCP_BENCH_CALLER": caller, "ZTCP_BENCH_BODY": str(payload)}
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script),
                              f"{base}/v1/decisions"], env=env, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, {"p50_ms": ms("50"), "p90_ms": ms("90"), "p99_ms": ms("99")}, int(non2xx.group(1)) if non2xx else 0


def over_http(total: int, concurrency: int) -> tuple[float, dict, int]:
    port = _free_port()
    home = tempfile.mkdtemp(prefix="ztcp-bench-")
    env = {**os.environ, "ZTCP_HOME": home, "ZTCP_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not become ready: " + server.stderr.read(2000).decode())  # type: ignore[union-attr]

        def ztcp(*args: str) -> str:
            return subprocess.run([sys.executable, "-m", "cli.main", "token", "issue", *args], env=env,
                                  check=True, capture_output=True, text=True).stdout.strip()

        caller = ztcp("--client", "bench", "--scope", "pdp:decide", "--ttl", "1h")
        subject = ztcp("--sub", "emp-0042", "--role", "case_officer", "--method", "fido2", "--mfa", "--ttl", "1h")
        if shutil.which("wrk"):
            return _wrk(base, caller, request_doc(subject), max(5, total // 1000), concurrency)
        rps, latencies, errors = asyncio.run(_load(base, caller, request_doc(subject), total, concurrency))
        return rps, percentiles(latencies), errors
    finally:
        server.terminate()
        server.wait(30)


def main(quick: bool = False) -> None:
    n = 2000 if quick else 20000
    with _postgres() as database_url:
        rates = in_process(n, database_url)
        seen = replica_visibility(database_url, 100 if quick else 300) if database_url else None
    raw, decide, parsed = rates["raw"], rates["sqlite"], rates["sqlite_parsed"]
    rows = [
        result("raw engine eval (regorus, default pack)", raw, "evals/s", anchor="the anchor"),
        result("decide in process (signals+policy+token+log)", decide, "decisions/s",
               target="≥ 10,000/s per core", ok=decide >= 10_000,
               anchor=f"{decide / raw:.0%} of raw engine rate"),
        result("decide in process incl. JSON model validation", parsed, "decisions/s",
               anchor=f"{parsed / raw:.0%} of raw engine rate"),
    ]
    print(f"raw {raw:,.0f}/s  decide {decide:,.0f}/s  decide+parse {parsed:,.0f}/s", flush=True)
    rows.append(result("decide in process, CPU per decision (all threads: request path + store writers)",
                       rates["sqlite_cpu_us"], "µs", anchor="SQLite stores (the default)"))
    if "postgresql" in rates:
        pg = rates["postgresql"]
        rows.append(result("decide in process, decision log and signal history in PostgreSQL (ZTCP_DATABASE_URL)",
                           pg, "decisions/s", anchor=f"{pg / decide:.0%} of the SQLite-store rate in the same run"))
        rows.append(result("decide in process on PostgreSQL stores, CPU per decision (all threads, incl. the tail)",
                           rates["postgresql_cpu_us"], "µs",
                           anchor=f"SQLite stores {rates['sqlite_cpu_us']:,.0f} µs in the same run"))
        print(f"decide on PostgreSQL stores {pg:,.0f}/s ({pg / decide:.0%} of SQLite); CPU "
              f"{rates['postgresql_cpu_us']:,.0f} vs {rates['sqlite_cpu_us']:,.0f} µs", flush=True)
    if seen:
        rows.append(result("signal observation on replica A applied on replica B (PostgreSQL, NOTIFY + tail), p50",
                           seen["p50_ms"], "ms", p99_ms=round(seen["p99_ms"], 2),
                           anchor=f"p99 {seen['p99_ms']:.1f} ms; read-through bound when the tail lags: 500 ms"))
        print(f"replica visibility p50 {seen['p50_ms']:.2f} ms p99 {seen['p99_ms']:.2f} ms", flush=True)
    rps, lat, errors = over_http(2000 if quick else 20000, 32)
    generator = "wrk, 1 thread" if shutil.which("wrk") else "Python asyncio client"
    rows.append(result(f"HTTP POST /v1/decisions (1 server process, 32 connections, {generator})", rps, "req/s",
                       target="≥ 2,500 req/s, p99 ≤ 10 ms", ok=rps >= 2500 and lat["p99_ms"] <= 10,
                       p50_ms=round(lat["p50_ms"], 2), p99_ms=round(lat["p99_ms"], 2), errors=errors,
                       anchor=f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, {errors} errors"))
    print(f"http {rps:,.0f} req/s p50 {lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms errors {errors}")
    rps4, lat4, errors4 = over_http(2000 if quick else 10000, 4)
    rows.append(result(f"HTTP POST /v1/decisions, latency at 4 connections ({generator})", lat4["p99_ms"], "ms p99",
                       target="p99 ≤ 10 ms", ok=lat4["p99_ms"] <= 10, rps=round(rps4, 1), errors=errors4,
                       anchor=f"p50 {lat4['p50_ms']:.2f} ms at {rps4:,.0f} req/s"))
    print(f"http@4 {rps4:,.0f} req/s p50 {lat4['p50_ms']:.2f} ms p99 {lat4['p99_ms']:.2f} ms")
    write("pdp", rows, quick=quick)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
