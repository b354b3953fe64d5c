"""Cluster benchmark (issue #12): ztcp behind HAProxy (deploy/haproxy/haproxy.cfg), as deployed.

- HTTP decisions through HAProxy: ``ztcp serve`` with 1 worker vs ``--workers 2`` on PostgreSQL
  (``ZTCP_DATABASE_URL``, a throwaway local cluster with fsync on), and 1 worker on SQLite (the
  embedded default); req/s at 32 connections and p99 at 8. The anchor is HAProxy in front of an
  empty Starlette route on the same server settings: what the proxy, uvicorn and wrk cost here.
- Gateway read (decide + durable ``pii.read`` + decrypt) through HAProxy with 2 workers on PostgreSQL.
- Failover: the integrator killed with -9 → a standby takes the role, and the next checkpoint is
  signed; a replica killed with -9 under load → HAProxy marks it down (its admin socket), and how
  many requests failed meanwhile.

Everything (wrk with one thread, HAProxy, the servers, PostgreSQL) shares this machine's two cores,
so a second worker competes with the load generator and the database for the same CPU.
Targets (issue #12): 2 workers ≥ 1.7 × one; ≥ 2,500 req/s at 32 connections; p99 ≤ 10 ms at 8;
gateway read ≥ 1,000 req/s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks.common import result, write

ROOT = Path(__file__).resolve().parents[1]


def _helpers():  # noqa: ANN202 - the tests' cluster harness (tests/helpers/cluster.py), loaded by path
    name = "ztcp_test_helpers.cluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "helpers" / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ZTCP_BENCH_CALLER")
wrk.body = io.open(os.getenv("ZTCP_BENCH_BODY")):read("*a")
"""

_READ = """
local tokens = {}
for line in io.lines(os.getenv("ZTCP_BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local path = os.getenv("ZTCP_BENCH_PATH")
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. tokens[i], ["X-Device-Id"] = "dev-cl-1",
    ["X-Network-Zone"] = "internal", ["X-Channel"] = "counter", ["X-Geo"] = "25.04,121.56"})
end
"""


def _wrk(url: str, script: str, env: dict[str, str], seconds: int, connections: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "load.lua"
        lua.write_text(script)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
                              "-s", str(lua), url],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0}


def _decisions(lb_url: str, caller: str, body: dict, seconds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "body.json"
        payload.write_text(json.dumps(body))
        env = {"ZTCP_BENCH_CALLER": caller, "ZTCP_BENCH_BODY": str(payload)}
        _wrk(f"{lb_url}/v1/decisions", _POST, env, 2, 8)  # warm-up: caches, pools, JIT of the engine
        at32 = _wrk(f"{lb_url}/v1/decisions", _POST, env, seconds, 32)
        at8 = _wrk(f"{lb_url}/v1/decisions", _POST, env, seconds, 8)
    return {"c32": at32, "c8": at8}


@contextlib.contextmanager
def _haproxy(tmp: Path, backend: str) -> Iterator[str]:
    helpers = _helpers()
    port = helpers.free_port()
    cfg = tmp / f"haproxy-{port}.cfg"
    cfg.write_text(helpers.haproxy_config(f"127.0.0.1:{port}", [backend], tag_replica=False))
    proc = subprocess.Popen([helpers.HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _wait(url: str, method: str = "GET", timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.request(method, url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def _serve_anchor(port: int) -> None:
    """An empty decision route and a /readyz for HAProxy's checks, on ztcp serve's server settings."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from server.serve import SERVER_OPTIONS

    async def empty(request) -> Response:  # noqa: ANN001
        await request.body()
        return Response(b'{"effect":"permit"}', media_type="application/json")

    async def ready(_request) -> Response:  # noqa: ANN001
        return Response(b'{"status":"ready"}', media_type="application/json")

    app = Starlette(routes=[Route("/v1/decisions", empty, methods=["POST"]), Route("/readyz", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, proxy_headers=False,
                loop=SERVER_OPTIONS["loop"], http=SERVER_OPTIONS["http"])


def anchor(tmp: Path, seconds: int) -> dict:
    """HAProxy + an empty route (uvicorn, uvloop, httptools: ztcp serve's settings)."""
    port = _helpers().free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_cluster", "--anchor-server", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with _haproxy(tmp, f"127.0.0.1:{port}") as lb:
            _wait(f"{lb}/v1/decisions", "POST")
            return _decisions(lb, "x", {"empty": True}, seconds)
    finally:
        server.terminate()
        server.wait(30)


def sqlite_one_worker(tmp: Path, seconds: int) -> dict:
    """One ``ztcp serve`` on the embedded SQLite stores behind HAProxy."""
    helpers = _helpers()
    home, port = tmp / "sqlite-home", helpers.free_port()
    home.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")}
    env |= {"ZTCP_HOME": str(home), "ZTCP_PORT": str(port), "ZTCP_TRUSTED_PROXIES": '["127.0.0.1"]',
            "ZTCP_CONFIG": str(home / "none.toml"), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/readyz")

        def token(*args: str) -> str:
            return subprocess.run([sys.executable, "-m", "cli.main", "token", "issue", *args], env=env, cwd=ROOT,
                                  check=True, capture_output=True, text=True).stdout.strip()

        caller = token("--client", "bench", "--scope", "pdp:decide", "--ttl", "1h")
        subject = token("--sub", "emp-0042", "--role", "case_officer", "--method", "fido2", "--mfa", "--ttl", "1h")
        body = {"subject_token": subject, "device": {"id": "dev-d", "managed": True, "compliant": True},
                "context": {"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter",
                            "geo": {"lat": 25.03, "lon": 121.56, "country": "TW"}},
                "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                             "citizen_ref": "cr_SAMPLE" + "A" * 45 + "B", "fields": ["name", "address"],
                             "classification": "personal"},
                "action": "read", "purpose": {"code": "benefit_review", "case_id": "C-2026-0001"}}
        with _haproxy(tmp, f"127.0.0.1:{port}") as lb:
            _wait(f"{lb}/readyz")
            return _decisions(lb, caller, body, seconds)
    finally:
        server.terminate()
        server.wait(30)


def postgres(tmp: Path, workers: int, seconds: int, *, reads: bool) -> dict:
    """One replica with ``workers`` processes on PostgreSQL behind HAProxy: decisions, then reads."""
    helpers = _helpers()
    cluster = helpers.Cluster(tmp / f"pg-{workers}w", n=1, workers=workers, fsync=True, siem_interval=60).start()
    try:
        body = cluster.decision_body(helpers.READERS[0], citizen=cluster.citizen_x)
        out = _decisions(cluster.lb_url, cluster.caller, body, seconds)
        if reads:
            tokens = tmp / f"tokens-{workers}.txt"
            # Other officers than the one whose thousands of decisions per second just ran: its request
            # rate now rightly makes the policy ask it to step up.
            tokens.write_text("\n".join(cluster.tokens[s] for s in helpers.READERS[1:]) + "\n")
            path, params = cluster.read_path()
            env = {"ZTCP_BENCH_TOKENS": str(tokens), "ZTCP_BENCH_PATH": str(httpx.URL(path, params=params))}
            _wrk(cluster.lb_url + path, _READ, env, 2, 8)
            out["read"] = _wrk(cluster.lb_url + path, _READ, env, seconds, 32)
            out["bytes"] = _bytes_per_row(cluster.database_url)
        return out
    finally:
        cluster.close()


def _bytes_per_row(url: str) -> dict[str, float]:
    """Bytes on disk per row (tables with their indexes and TOAST) after the run: the scale model's
    inputs (docs/operations.md). The ledger counts everything per entry: entries, tree nodes, the
    citizen index."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # settle the visibility map; sizes are what is kept

        def one(sql: str, args: tuple = ()) -> int:
            row = conn.execute(sql, args).fetchone()
            return int(row[0]) if row else 0

        def size(*tables: str) -> int:
            return sum([one("SELECT pg_total_relation_size(%s)", (t,)) for t in tables])

        def count(table: str) -> int:
            return one(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names

        entries = count("ztcp_ledger.entries")
        ledger = size("ztcp_ledger.entries", "ztcp_ledger.nodes", "ztcp_ledger.upper_nodes", "ztcp_ledger.citizens",
                      "ztcp_ledger.checkpoints")
        decisions, observations = count("decision_log"), count("signal_observations")
        return {"ledger": ledger / max(1, entries), "ledger_rows": entries,
                "decision_log": size("decision_log") / max(1, decisions), "decision_rows": decisions,
                "signals": size("signal_observations") / max(1, observations), "signal_rows": observations}


def failover(tmp: Path) -> dict:
    """Two replicas on PostgreSQL behind HAProxy under a steady load of reads and decisions: kill -9
    the integrator (takeover, next checkpoint), later a replica (HAProxy marks it down; failures)."""
    helpers = _helpers()
    cluster = helpers.Cluster(tmp / "failover", n=2, fsync=True, stats_socket=tmp / "haproxy.sock",
                              siem_interval=60).start()
    outcomes: list[tuple[float, bool]] = []
    stop = threading.Event()

    def load(k: int) -> None:
        with httpx.Client(base_url=cluster.lb_url, timeout=10) as client:
            while not stop.is_set():
                t = time.time()
                try:
                    if k % 2:
                        path, params = cluster.read_path()
                        sub = helpers.READERS[k % len(helpers.READERS)]
                        ok = client.get(path, params=params, headers=cluster.read_headers(sub)).status_code == 200
                    else:
                        body = cluster.decision_body(helpers.DECIDERS[k], citizen=cluster.citizen_x)
                        ok = client.post("/v1/decisions", json=body, headers={
                            "Authorization": f"Bearer {cluster.caller}"}).status_code == 200
                except httpx.TransportError:
                    ok = False
                outcomes.append((t, ok))
                stop.wait(0.05)

    threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        import psycopg

        def checkpoint_size() -> int:
            with psycopg.connect(cluster.database_url, autocommit=True) as conn:
                row = conn.execute("SELECT coalesce(max(size), 0) FROM ztcp_ledger.checkpoints").fetchone()
                return int(row[0]) if row else 0

        integrator = cluster.role_holder("integrator")
        assert integrator is not None
        before = checkpoint_size()
        killed = time.time()
        integrator.kill()
        takeover = next_checkpoint = None
        while time.time() - killed < 30 and (takeover is None or next_checkpoint is None):
            if takeover is None:
                holder = cluster.role_holder("integrator")
                if holder is not None and holder is not integrator:
                    takeover = time.time() - killed
            if next_checkpoint is None and checkpoint_size() > before:
                next_checkpoint = time.time() - killed
            time.sleep(0.05)
        integrator.start()
        integrator.wait_ready()
        # Both back in rotation, then a replica (the one that is not the integrator now) killed.
        deadline = time.time() + 30
        while set(helpers.haproxy_states(cluster.stats_socket).values()) != {"UP"} and time.time() < deadline:
            time.sleep(0.2)
        victim = next(r for r in cluster.replicas if r is not cluster.role_holder("integrator"))
        name = victim.name
        killed = time.time()
        victim.kill()
        marked_down = None
        while time.time() - killed < 15:
            if helpers.haproxy_states(cluster.stats_socket).get(name, "").startswith("DOWN"):
                marked_down = time.time() - killed
                break
            time.sleep(0.02)
        time.sleep(2)
        window = [ok for t, ok in outcomes if killed - 0.5 <= t <= killed + (marked_down or 15) + 1]
        return {"takeover_s": takeover, "next_checkpoint_s": next_checkpoint, "down_s": marked_down,
                "failed": window.count(False), "requests": len(window)}
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        cluster.close()


def main(quick: bool = False) -> None:
    if not shutil.which("wrk") or _helpers().pg_helpers.pg_bin() is None:
        raise SystemExit("bench_cluster needs wrk, haproxy and PostgreSQL (scripts/install-system-deps.sh)")
    seconds = 4 if quick else 10
    with tempfile.TemporaryDirectory(prefix="ztcp-bench-cluster-") as name:
        tmp = Path(name)
        base = anchor(tmp, seconds)
        print(f"anchor (HAProxy + empty route): {base['c32']['rps']:,.0f} req/s @32, "
              f"p99 {base['c8']['p99_ms']:.2f} ms @8", flush=True)
        lite = sqlite_one_worker(tmp, seconds)
        print(f"sqlite 1 worker: {lite['c32']['rps']:,.0f} req/s, p99@8 {lite['c8']['p99_ms']:.1f} ms", flush=True)
        one = postgres(tmp, 1, seconds, reads=False)
        print(f"pg 1 worker: {one['c32']['rps']:,.0f} req/s, p99@8 {one['c8']['p99_ms']:.1f} ms", flush=True)
        two = postgres(tmp, 2, seconds, reads=True)
        print(f"pg 2 workers: {two['c32']['rps']:,.0f} req/s, p99@8 {two['c8']['p99_ms']:.1f} ms; read "
              f"{two['read']['rps']:,.0f} req/s", flush=True)
        fo = failover(tmp)
        print(f"failover: {fo}", flush=True)
    a = base["c32"]["rps"]

    def bad(d: dict) -> int:
        return d["non2xx"] + d["socket_errors"]

    rows = [
        result("HAProxy + empty Starlette route, 32 connections (wrk, 1 thread; anchor)", a, "req/s",
               anchor=f"the anchor: p99 {base['c8']['p99_ms']:.2f} ms at 8 connections"),
        result("decisions through HAProxy, 1 worker, SQLite stores (the embedded default), 32 connections",
               lite["c32"]["rps"], "req/s", errors=bad(lite["c32"]),
               anchor=f"{lite['c32']['rps'] / a:.0%} of the anchor; p99 at 8: {lite['c8']['p99_ms']:.1f} ms"),
        result("decisions through HAProxy, 1 worker, PostgreSQL (ZTCP_DATABASE_URL), 32 connections",
               one["c32"]["rps"], "req/s", target="≥ 2,500 req/s", ok=one["c32"]["rps"] >= 2500,
               errors=bad(one["c32"]),
               anchor=f"{one['c32']['rps'] / a:.0%} of the anchor; {one['c32']['rps'] / lite['c32']['rps']:.0%} of "
                      "SQLite's"),
        result("decisions through HAProxy, 2 workers (serve --workers 2), PostgreSQL, 32 connections",
               two["c32"]["rps"], "req/s", target="≥ 1.7 × 1 worker", ok=two["c32"]["rps"] >= 1.7 * one["c32"]["rps"],
               errors=bad(two["c32"]),
               anchor=f"{two['c32']['rps'] / one['c32']['rps']:.2f} × 1 worker; {two['c32']['rps'] / a:.0%} of the "
                      "anchor (2 cores shared with wrk, HAProxy, PostgreSQL)"),
        result("decisions through HAProxy, 1 worker, PostgreSQL, p99 at 8 connections", one["c8"]["p99_ms"], "ms p99",
               target="p99 ≤ 10 ms", ok=one["c8"]["p99_ms"] <= 10,
               anchor=f"2 workers {two['c8']['p99_ms']:.1f} ms, SQLite {lite['c8']['p99_ms']:.1f} ms, anchor "
                      f"{base['c8']['p99_ms']:.2f} ms"),
        result("gateway read through HAProxy (decide + durable pii.read + decrypt), 2 workers, PostgreSQL, "
               "32 connections", two["read"]["rps"], "req/s", target="≥ 1,000 req/s", ok=two["read"]["rps"] >= 1000,
               errors=bad(two["read"]), p99_ms=round(two["read"]["p99_ms"], 1),
               anchor=f"{two['read']['rps'] / two['c32']['rps']:.0%} of a bare decision's rate on the same workers; "
                      f"p99 {two['read']['p99_ms']:.1f} ms"),
    ]
    b = two["bytes"]
    rows.append(result("PostgreSQL bytes per decision-log entry (table + indexes, after the run)", b["decision_log"],
                       "bytes", rows=b["decision_rows"],
                       anchor=f"signal observation {b['signals']:,.0f} B; ledger {b['ledger']:,.0f} B per pii.read "
                              f"(entries, tree, citizen index; {b['ledger_rows']:,} events)"))
    if fo["takeover_s"] is not None:
        rows.append(result("failover: integrator kill -9 → a standby integrates", fo["takeover_s"], "s",
                           target="≤ 10 s", ok=fo["takeover_s"] <= 10,
                           anchor="lease poll 1 s; the killed session's advisory lock is freed when its TCP dies"))
    if fo["next_checkpoint_s"] is not None:
        rows.append(result("failover: integrator kill -9 → next signed checkpoint", fo["next_checkpoint_s"], "s",
                           anchor=f"takeover {fo['takeover_s'] or float('nan'):.2f} s, then the new integrator's "
                                  "first checkpoint: one every 1,000 events or 60 s (~60 events/s of load here)"))
    if fo["down_s"] is not None:
        rows.append(result("failover: replica kill -9 → HAProxy marks it down", fo["down_s"], "s",
                           failed=fo["failed"], requests=fo["requests"],
                           anchor=f"checks every 1 s, fall 2; {fo['failed']} of {fo['requests']} requests failed "
                                  "meanwhile (503 or connection error, no data)"))
    write("cluster", rows, quick=quick)


if __name__ == "__main__":
    if "--anchor-server" in sys.argv:
        _serve_anchor(int(sys.argv[sys.argv.index("--anchor-server") + 1]))
    else:
        main(quick="--quick" in sys.argv)
