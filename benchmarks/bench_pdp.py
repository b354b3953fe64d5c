"""PDP benchmark: raw engine evaluation vs in-process decide vs HTTP, in one run.

- raw engine: regorus evaluating the default pack on the same permit input (the anchor);
- in-process decide: token verification (cached) + signals + policy + decision token + log submit.
  The PDP runs on a simulated clock, 1.5 s per decision from a Monday 09:00 in Taipei: one officer
  reading at a working pace within office hours, the typical permit (score 0, 10 once the sign-in is
  an hour old); on the wall clock one subject deciding 10,000 times a second trips the request-rate
  factor, and the hour of the run decides off-hours. The decision log and signal history run on
  SQLite (the default) and on PostgreSQL (``ZTCP_DATABASE_URL``, a throwaway local cluster),
  alternated in the same run;
- replica visibility: an observation made by one signal history, until another on the same
  PostgreSQL database has applied it (write-behind commit + NOTIFY + tail);
- HTTP: `ztcp serve` in its own process, wrk (one thread) from this one; the anchor is an empty
  Starlette route served by uvicorn with the same settings (uvloop, httptools, no access log), so
  the ratio is what the PDP costs over the server and the load generator on these two shared cores.
Targets (issue #16): in-process ≥ 10,000/s per core and ≥ 75 % of the raw engine rate; HTTP
≥ 2,500 req/s at 32 connections, p99 ≤ 10 ms at 8.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.common import percentiles, postgres_cluster, rate, result, write
from contracts.decision import DecisionRequest
from pdp.calendar import BusinessCalendar
from pdp.decision_log import DecisionLog, DecisionLogReader
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


MONDAY_09 = 1795395600.0  # 2026-11-23T09:00:00+08:00


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stores(kind: str, tmp: Path, database_url: str | None,
            clock: Callable[[], float]) -> tuple[DecisionLog, SignalHistory]:
    if kind == "sqlite":
        return DecisionLog(tmp / "decisions.db"), SignalHistory(tmp / "signals.db", clock=clock)
    from pdp.pg_stores import PostgresDecisionStore, PostgresSignalStore

    assert database_url
    return (DecisionLog(PostgresDecisionStore(database_url)),
            SignalHistory(store=PostgresSignalStore(database_url), clock=clock))


def in_process(n: int, database_url: str | None = None) -> dict[str, float]:
    """Decisions per second: the raw engine, and decide on each store kind (alternated, so both see
    the same machine), each on its own simulated working day."""
    pack = load_pack()
    issuer = DevIssuer(Ed25519PrivateKey.generate(), "https://idp.bench", "ztcp")
    verifier = JwtVerifier(StaticKeySource(issuer.jwks), "https://idp.bench", "ztcp")
    engine = create_engine(pack, "regorus", revision="bench")
    calendar = BusinessCalendar.from_config(pack.data.get("ztcp", {}).get("config", {}).get("calendar"))
    token = issuer.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True, ttl_seconds=43200,
                                 now=MONDAY_09, auth_time=int(MONDAY_09))
    req = DecisionRequest.model_validate(request_doc(token))
    body = orjson.dumps(request_doc(token))
    out: dict[str, float] = {}
    kinds = ("sqlite", "postgresql") if database_url else ("sqlite",)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            now = [MONDAY_09]

            def clock() -> float:
                now[0] += 1.5  # noqa: B023 - used within this pass
                return now[0]  # noqa: B023

            log, history = _stores(kind, _fresh(Path(tmp) / kind), database_url, clock)
            point = DecisionPoint(verifier=verifier, signer=DecisionTokenSigner(Ed25519PrivateKey.generate(), "b"),
                                  log=log, history=history, active=ActivePolicy(engine, calendar), clock=clock)
            for _ in range(50):  # the officer's device and dataset are known by now
                point.decide(req)
            if "raw" not in out:
                subject = verifier.verify_subject(token, now=now[0])
                input_doc = build_input(subject, req, history.compute(subject, req, now[0], calendar), now[0],
                                        calendar)
                out["raw"] = rate(lambda: engine.evaluate(input_doc), n)  # noqa: B023 - used at once
            first = point.decide(req)
            cpu = time.process_time()
            decide = rate(lambda: point.decide(req), n)  # noqa: B023
            # CPU of the whole process (request path and the stores' writer/tail threads) per decision:
            # steadier than the wall rate on a shared machine, and it counts the background work too.
            cpu_us = (time.process_time() - cpu) / (n + min(200, n // 10 + 1)) * 1e6
            # the same, but parsing the JSON body each time as the HTTP path does
            parsed = rate(lambda: point.decide(DecisionRequest.model_validate(orjson.loads(body))), n)  # noqa: B023
            last = point.decide(req)
            assert first.effect == "permit" and last.effect == "permit", (kind, first.reasons, last.reasons)
            assert log.flush(60) and history.flush(60)  # everything decided was stored
            point.close()
            log.close()
            history.close()
            out[kind], out[f"{kind}_cpu_us"], out[f"{kind}_parsed"] = decide, cpu_us, parsed
            print(f"  {kind}: decide {decide:,.0f}/s ({cpu_us:,.0f} µs CPU each), with parsing {parsed:,.0f}/s",
                  flush=True)
    return out


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

    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no request rate: {out[-500:]}")
    rps = float(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, {"p50_ms": ms("50"), "p90_ms": ms("90"), "p99_ms": ms("99")}, int(non2xx.group(1)) if non2xx else 0


def _anchor_app():  # noqa: ANN202 - a Starlette app
    """An empty route: what uvicorn, the event loop, HTTP parsing and wrk cost on this machine."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def empty(request) -> Response:  # noqa: ANN001
        await request.body()
        return Response(b'{"effect":"permit"}', media_type="application/json")

    return Starlette(routes=[Route("/v1/decisions", empty, methods=["POST"])])


def _serve_anchor(port: int) -> None:
    import uvicorn

    from server.serve import SERVER_OPTIONS

    uvicorn.run(_anchor_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                proxy_headers=False, **SERVER_OPTIONS)


def _serve_on_monday(port: int) -> None:
    """``ztcp serve`` (the same ``serve()``) on a clock that reads Monday 09:00 Asia/Taipei when it
    starts, as the in-process rows' simulated clock does: the HTTP rows then measure the same
    business-hours permit, whatever the day and hour of the run (on the wall clock a Saturday-evening
    run also evaluated the off-hours and holiday risk factors). The tokens are issued on that clock,
    into the home, where ``over_http`` reads them."""
    from server.runtime import Runtime
    from server.serve import serve
    from server.settings import load_settings

    offset = MONDAY_09 - time.time()

    def clock() -> float:
        return time.time() + offset

    settings = load_settings(port=port)
    runtime = Runtime(settings, clock=clock)
    try:
        issuer = runtime.issuer
        assert issuer is not None, "the benchmark needs the development IdP (no ZTCP_IDP_ISSUER)"
        started = clock()
        (runtime.home / "bench-caller.jwt").write_text(issuer.issue_client("bench", ["pdp:decide"]))
        (runtime.home / "bench-subject.jwt").write_text(issuer.issue_subject(
            "emp-0042", ["case_officer"], method="fido2", mfa=True, ttl_seconds=3600, now=started,
            auth_time=int(started)))
    finally:
        runtime.close()
    serve(settings, log_level="warning", say=lambda _line: None, clock=clock)


def _wait_ready(base: str, path: str, server: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            method = "POST" if path == "/v1/decisions" else "GET"
            if httpx.request(method, f"{base}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    stderr = server.stderr.read(2000).decode() if server.stderr is not None else ""
    raise RuntimeError("server did not become ready: " + stderr)


def _pdp_latency(metrics: str) -> dict[str, float]:
    """The server's own time per decision (``ztcp_decision_latency_seconds``), beside the client's:
    the bucket bound under which 99 % of decisions finished inside the PDP, and the share ≤ 1 ms."""
    buckets: list[tuple[float, float]] = []
    for line in metrics.splitlines():
        if line.startswith("ztcp_decision_latency_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return {}
    p99 = next(bound for bound, count in buckets if count >= 0.99 * total)
    within_1ms = next((count for bound, count in buckets if bound >= 0.001), total) / total
    return {"pdp_p99_le_ms": p99 * 1000, "pdp_within_1ms": within_1ms}


def _served(path: Path) -> dict[str, Any]:
    """What the server decided, from its own decision log: the engine's time per decision and the
    scenario (time of day, holiday, effect), so a row says which path of the policy it measured."""
    entries = DecisionLogReader(path).entries(last=5000)
    if not entries:
        return {}
    evals = sorted(e["metrics"]["timer_rego_query_eval_ns"] / 1000 for e in entries)
    signals = entries[-1]["input"]["signals"]
    when = "off hours" if signals.get("off_hours") else "business hours"
    return {"engine_p50_us": evals[len(evals) // 2],
            "scenario": f"{when}{', holiday' if signals.get('holiday') else ''} "
                        f"({signals.get('local_hour')}:00 Asia/Taipei), {entries[-1]['result']['effect']}"}


def over_http(total: int, concurrency: int, *, anchor: bool = False) -> tuple[float, dict, int]:
    """``ztcp serve`` on the simulated Monday (or, with ``anchor``, the empty Starlette route) under
    load at ``concurrency``; for the server, its own latency histogram and decision log too."""
    port = _free_port()
    home = Path(tempfile.mkdtemp(prefix="ztcp-bench-"))
    env = {**os.environ, "ZTCP_HOME": str(home), "ZTCP_PORT": str(port)}
    command = [sys.executable, "-m", "benchmarks.bench_pdp", "--anchor-server" if anchor else "--serve", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, "/v1/decisions" if anchor else "/readyz", server)
        caller, subject = ("-", "-") if anchor else \
            ((home / "bench-caller.jwt").read_text(), (home / "bench-subject.jwt").read_text())
        if shutil.which("wrk"):
            rps, lat, errors = _wrk(base, caller, request_doc(subject), max(5, total // 1000), concurrency)
        else:
            rps, latencies, errors = asyncio.run(_load(base, caller, request_doc(subject), total, concurrency))
            lat = percentiles(latencies)
        if not anchor:
            lat.update(_pdp_latency(httpx.get(f"{base}/metrics", timeout=10).text))
    finally:
        server.terminate()
        server.wait(30)
    if not anchor:  # the log flushed at shutdown
        lat.update(_served(home / "decisions.db"))
    return rps, lat, errors


def main(quick: bool = False) -> None:
    n = 2000 if quick else 5000  # 3 passes of n on the simulated clock stay within one working day
    with postgres_cluster() as database_url:
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
    generator = "wrk, 1 thread" if shutil.which("wrk") else "Python asyncio client"
    total = 5000 if quick else 20000
    a_rps, a_lat, _ = over_http(total, 32, anchor=True)
    rps, lat, errors = over_http(total, 32)
    rows.append(result("HTTP empty Starlette route, same server settings (uvloop, httptools), 32 connections "
                       f"({generator}; anchor)", a_rps, "req/s",
                       anchor=f"the anchor: p50 {a_lat['p50_ms']:.2f} ms, p99 {a_lat['p99_ms']:.2f} ms"))
    rows.append(result(f"HTTP POST /v1/decisions (1 server process, 32 connections, {generator})", rps, "req/s",
                       target="≥ 2,500 req/s", ok=rps >= 2500,
                       p50_ms=round(lat["p50_ms"], 2), p99_ms=round(lat["p99_ms"], 2), errors=errors,
                       anchor=f"{rps / a_rps:.0%} of the empty route's {a_rps:,.0f} req/s; p50 {lat['p50_ms']:.2f} ms, "
                              f"p99 {lat['p99_ms']:.2f} ms, {errors} errors; {lat.get('scenario', '?')}: engine "
                              f"{lat.get('engine_p50_us', float('nan')):.0f} µs per decision (p50, the server's "
                              f"decision log) vs the raw anchor's {1e6 / raw:.0f} µs"))
    print(f"anchor {a_rps:,.0f} req/s; http {rps:,.0f} req/s p50 {lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms "
          f"errors {errors}", flush=True)
    rps8, lat8, errors8 = over_http(total // 2, 8)
    a_rps8, a_lat8, _ = over_http(total // 2, 8, anchor=True)
    rows.append(result(f"HTTP POST /v1/decisions, latency at 8 connections ({generator})", lat8["p99_ms"], "ms p99",
                       target="p99 ≤ 10 ms", ok=lat8["p99_ms"] <= 10, rps=round(rps8, 1), errors=errors8,
                       anchor=f"p50 {lat8['p50_ms']:.2f} ms at {rps8:,.0f} req/s (8 ÷ rate = "
                              f"{8000 / rps8:.2f} ms: each call waits for the other connections' decisions); "
                              f"inside the PDP {lat8.get('pdp_within_1ms', float('nan')):.1%} of decisions took "
                              f"≤ 1 ms, p99 ≤ {lat8.get('pdp_p99_le_ms', float('nan')):g} ms; empty route at 8: "
                              f"p99 {a_lat8['p99_ms']:.2f} ms at {a_rps8:,.0f} req/s; {lat8.get('scenario', '?')}"))
    print(f"http@8 {rps8:,.0f} req/s p50 {lat8['p50_ms']:.2f} ms p99 {lat8['p99_ms']:.2f} ms "
          f"(anchor p99 {a_lat8['p99_ms']:.2f} ms)")
    write("pdp", rows, quick=quick)


if __name__ == "__main__":
    if "--anchor-server" in sys.argv:
        _serve_anchor(int(sys.argv[sys.argv.index("--anchor-server") + 1]))
    elif "--serve" in sys.argv:
        _serve_on_monday(int(sys.argv[sys.argv.index("--serve") + 1]))
    else:
        main(quick="--quick" in sys.argv)
