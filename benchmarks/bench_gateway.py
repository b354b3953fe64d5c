"""Gateway read over HTTP (issue #16): ``GET /v1/records/{dataset}/{id}`` on a real ``ztcp serve``.

The home is seeded with real components (as tests/helpers/insured_persons.py does): the sealed
keyring, a protected ``insured_persons`` table encrypted in place by keymgmt, one open case per
officer about that officer's citizen, the officers' workstation in the device inventory. The server
runs in its own process (1 worker, uvloop + httptools, loopback trusted as the bureau's proxy so
the device, zone, channel and location headers are believed); wrk (C, one thread) drives reads,
each officer reading their own case's record in turn.

Figures:
- reads/s at 32 connections (target ≥ 1,000 req/s), p99 at 8 connections; 0 errors required;
- the guarantee under load: the ledger's ``pii.read`` events counted before and after — at least
  one per 2xx answer (a read is recorded before it is answered; a few more when wrk stops with
  reads in flight, at most one per connection);
- anchor, same run, same home, no HTTP: the in-process read path — decide + decryption gate +
  durable ledger record, one caller — and ``Gateway.read`` (that plus request building and the
  gateway's checks), so the ratio says what HTTP and concurrency add or save.

``--profile`` runs the server under py-spy (``pip install py-spy``; a dev tool, not a dependency)
and writes the per-stage summary to ``benchmarks/profiles/gateway-read.txt``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import rate, result, write

ROOT = Path(__file__).resolve().parents[1]
DATASET = "insured_persons"
COLUMNS = ("name", "national_id", "address", "phone", "bank_account")
FIELDS = "name,address"
PURPOSE = "benefit_review"
DEVICE = "dev-bench-1"
HEADERS = {"X-Device-Id": DEVICE, "X-Network-Zone": "internal", "X-Channel": "counter", "X-Geo": "25.04,121.56"}
PROFILES = Path(__file__).resolve().parent / "profiles"


def _settings(home: Path):  # noqa: ANN202 - server.settings.Settings
    from server.settings import load_settings

    return load_settings(home=home, engine_timeout_ms=2000, trusted_proxies=["127.0.0.1"])


def seed(home: Path, officers: int) -> list[dict[str, Any]]:
    """The bureau in ``home``: ``officers`` case officers, each with an open case about one citizen
    whose record is in the encrypted table. Returns what each officer reads (id, record, case)."""
    import sqlalchemy as sa

    import contracts
    import keymgmt
    from server.runtime import BUREAU_DATA_FILE, Runtime

    rt = Runtime(_settings(home))
    try:
        rt.keys.ensure_all()
        rt.device_inventory.register(DEVICE, managed=True, compliant=True, actor="bench")
        bureau = json.loads((ROOT / "policy/rego/bureau/data.json").read_text())
        engine = rt.protected_engine
        md = sa.MetaData()
        table = sa.Table(DATASET, md, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("citizen_ref", sa.String(64)), *(sa.Column(c, sa.Text) for c in COLUMNS))
        md.create_all(engine)
        plan = []
        with engine.begin() as conn:
            for i in range(1, officers + 1):
                prefix = f"A1{i:07d}"
                nid = prefix + contracts.national_id_check_digit(prefix)
                ref = contracts.citizen_ref(nid, rt.keys.blind_index)
                conn.execute(table.insert().values(id=i, citizen_ref=ref, name=f"Bench Person {i}", national_id=nid,
                                                   address=f"{i} Bench Road, Taipei", phone=f"09{i:08d}",
                                                   bank_account=f"81200000{i:08d}"))
                case_id = f"C-BENCH-{i:04d}"
                officer = f"emp-bench-{i:03d}"
                bureau["cases"][case_id] = {"assignees": [officer], "citizen_ref": ref, "purposes": [PURPOSE],
                                            "status": "open", "sealed": False, "org_unit": "taipei-01"}
                plan.append({"officer": officer, "record_id": str(i), "case_id": case_id})
        (home / BUREAU_DATA_FILE).write_text(json.dumps(bureau))
        spec = keymgmt.TableSpec(table=DATASET, pk="id", columns=COLUMNS, blind_index=("national_id",),
                                 citizen_ref_column="citizen_ref")
        keymgmt.encrypt_table(keymgmt.EncryptedTable(engine, spec, keymgmt.Envelope(rt.key_provider, engine),
                                                     keymgmt.BlindIndexKeys(rt.key_provider)))
    finally:
        rt.close()
    return plan


def _token(rt: Any, officer: str) -> str:
    return rt.issuer.issue_subject(officer, ["case_officer"], method="fido2", mfa=True, org_unit="taipei-01",
                                   ttl_seconds=3000)


def in_process(home: Path, plan: list[dict[str, Any]], n: int) -> dict[str, float]:
    """The anchor: the read path without HTTP, one caller, on the home the server then serves."""
    from contracts.decision import Context, DecisionRequest, Device
    from gateway.gateway import Caller
    from server.runtime import Runtime

    rt = Runtime(_settings(home))
    try:
        me = plan[0]
        token = _token(rt, me["officer"])
        device = Device(id=DEVICE, managed=True, compliant=True)
        context = Context.model_validate({"ip": "127.0.0.1", "network_zone": "internal", "channel": "counter",
                                          "geo": {"lat": 25.04, "lon": 121.56}})
        request = DecisionRequest.model_validate({
            "subject_token": token, "device": device.model_dump(), "context": context.model_dump(),
            "resource": {"type": "record", "dataset": DATASET, "record_id": me["record_id"],
                         "citizen_ref": None, "fields": ["name", "address"]},
            "action": "read", "purpose": {"code": PURPOSE, "case_id": me["case_id"]}})
        reader = rt.protected_reader(DATASET)
        if reader is None:
            raise RuntimeError(f"the seeded home has no protected dataset {DATASET}")
        row = reader.table.fetch_row(int(me["record_id"]))
        if row is None:
            raise RuntimeError("the seeded record is missing")
        request = request.model_copy(update={"resource": request.resource.model_copy(
            update={"citizen_ref": row["citizen_ref"], "classification": "personal"})})
        point, gw = rt.point, rt.gateway
        subject = rt.verifier.verify_subject(token)
        caller = Caller(subject=subject, token=token, device=device, context=context)

        def decide_and_read() -> None:
            decision = point.decide(request, caller="ztcp-gateway")
            assert decision.effect == "permit", decision.reasons
            reader.read(decision.token, me["record_id"], ["name", "address"], purpose=PURPOSE)

        def gateway_read() -> None:
            gw.read(caller, DATASET, me["record_id"], ["name", "address"], PURPOSE, me["case_id"])

        cpu = time.process_time()
        gated = rate(decide_and_read, n)
        gated_cpu_us = (time.process_time() - cpu) / (n + min(200, n // 10 + 1)) * 1e6
        full = rate(gateway_read, n)
        return {"decide": rate(lambda: point.decide(request, caller="ztcp-gateway"), n), "gated": gated,
                "gated_cpu_us": gated_cpu_us, "gateway": full}
    finally:
        rt.close()


def _pii_reads(home: Path) -> int:
    import sqlite3

    ledger = next(p for p in (home / "provenance.db", home / "ledger.db", *home.glob("*.db"))
                  if p.exists() and _has_entries(p))
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM entries WHERE type = 'pii.read'").fetchone()[0]


def _has_entries(path: Path) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'entries'").fetchone() is not None
    except sqlite3.Error:
        return False


_WRK_SCRIPT = """
-- One request per officer (their token, their case's record), in turn.
local requests = {}
local i = 0
init = function(args)
  for line in io.lines(os.getenv("ZTCP_BENCH_PLAN")) do
    local path, token = line:match("^(%S+)\\t(%S+)$")
    local headers = {["Authorization"] = "Bearer " .. token, ["X-Device-Id"] = "DEVICE",
                     ["X-Network-Zone"] = "internal", ["X-Channel"] = "counter", ["X-Geo"] = "25.04,121.56"}
    requests[#requests + 1] = wrk.format("GET", path, headers)
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
""".replace("DEVICE", DEVICE)


def _wrk(base: str, lines: list[str], seconds: int, connections: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        script, plan = Path(tmp) / "read.lua", Path(tmp) / "plan.tsv"
        script.write_text(_WRK_SCRIPT)
        plan.write_text("\n".join(lines) + "\n")
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                              base], env={**os.environ, "ZTCP_BENCH_PLAN": str(plan)}, capture_output=True,
                             text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "total": total, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0,
            "p50_ms": ms("50"), "p90_ms": ms("90"), "p99_ms": ms("99")}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def over_http(home: Path, plan: list[dict[str, Any]], runs: list[tuple[int, int]], *,
              profile: Path | None = None) -> list[dict[str, float]]:
    """``ztcp serve`` on ``home``; for each (connections, seconds) a wrk run and the pii.read count."""
    from server.runtime import Runtime

    rt = Runtime(_settings(home))
    try:
        tokens = {p["officer"]: _token(rt, p["officer"]) for p in plan}
    finally:
        rt.close()
    lines = [f"/v1/records/{DATASET}/{p['record_id']}?fields={FIELDS}&purpose={PURPOSE}&case_id={p['case_id']}"
             f"\t{tokens[p['officer']]}" for p in plan]
    port = _free_port()
    env = {**os.environ, "ZTCP_HOME": str(home), "ZTCP_PORT": str(port), "ZTCP_ENGINE_TIMEOUT_MS": "2000",
           "ZTCP_TRUSTED_PROXIES": '["127.0.0.1"]'}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    spy = None
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("ztcp serve did not become ready: " + server.stderr.read(3000).decode())  # type: ignore[union-attr]
            time.sleep(0.3)
        first = plan[0]
        check = httpx.get(f"{base}{lines[0].split(chr(9))[0]}", timeout=30,
                          headers={"Authorization": f"Bearer {tokens[first['officer']]}", **HEADERS})
        if check.status_code != 200:
            raise RuntimeError(f"a gateway read was refused before the load: {check.status_code} {check.text[:500]}")
        _wrk(base, lines, 3, 32)  # warm-up: officers' devices, DEKs and every pool thread's policy are ready
        time.sleep(1)  # and its reads in flight are answered and recorded before the count
        out = []
        for connections, seconds in runs:
            if profile is not None and connections == 32:
                spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                # --gil: interpreter time only (the default); ZTCP_BENCH_SPY_IDLE=1: every thread, waits too
                mode = ["--idle"] if os.environ.get("ZTCP_BENCH_SPY_IDLE") else ["--gil"]
                spy = subprocess.Popen([spy_bin, "record", "--pid", str(server.pid), "--rate", "250", *mode,
                                        "--format", "raw", "--output", str(profile), "--duration", str(seconds),
                                        "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(0.5)
            before = _pii_reads(home)
            measured = _wrk(base, lines, seconds, connections)
            time.sleep(0.5)  # reads still in flight when wrk stopped finish (and are recorded)
            measured["pii_reads"] = _pii_reads(home) - before
            measured["connections"] = connections
            if spy is not None:
                spy.wait(seconds + 60)
                spy = None
            out.append(measured)
            print(f"  @{connections}: {measured['rps']:,.0f} req/s, p50 {measured['p50_ms']:.2f} ms, p99 "
                  f"{measured['p99_ms']:.2f} ms, {measured['total']} answered, non-2xx {measured['non2xx']}, "
                  f"socket errors {measured['socket_errors']}, pii.read +{measured['pii_reads']}", flush=True)
        return out
    finally:
        if spy is not None:
            spy.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(quick: bool = False, profile: bool = False) -> Path:
    if not shutil.which("wrk"):
        raise SystemExit("bench_gateway needs wrk (apt-get install wrk)")
    officers = 16  # < the policy's 20 distinct citizens per 10 minutes: no breadth_spike for anyone
    seconds = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="ztcp-bench-gateway-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        plan = seed(home, officers)
        load_before = _loadavg()
        anchor = in_process(home, plan, 500 if quick else 2000)
        print(f"  in process: decide {anchor['decide']:,.0f}/s, decide + gate + durable record "
              f"{anchor['gated']:,.0f}/s ({anchor['gated_cpu_us']:,.0f} µs CPU each), Gateway.read "
              f"{anchor['gateway']:,.0f}/s", flush=True)
        spy_out = Path(tmp) / "spy.txt" if profile else None
        at32, at8 = over_http(home, plan, [(32, seconds), (8, max(5, seconds // 2))], profile=spy_out)
        load_after = _loadavg()
        if spy_out is not None and spy_out.exists():
            from benchmarks.profile_gateway import summarise

            PROFILES.mkdir(exist_ok=True)
            if os.environ.get("ZTCP_BENCH_SPY_RAW"):  # the collapsed stacks themselves, for a closer look
                shutil.copy(spy_out, os.environ["ZTCP_BENCH_SPY_RAW"])
            (PROFILES / "gateway-read.txt").write_text(summarise(spy_out.read_text(), at32, anchor,
                                                                  f"{load_before} → {load_after}"))
    for m in (at32, at8):
        errors = m["non2xx"] + m["socket_errors"]
        ok_reads = m["total"] - m["non2xx"]
        if errors or not ok_reads <= m["pii_reads"] <= ok_reads + m["connections"]:
            raise SystemExit(f"gateway read under load broke its guarantee or failed: {m}")
    load = f"load average {load_before} before, {load_after} after"
    gated = anchor["gated"]
    rows = [
        result("in-process read path: decide + decryption gate + durable ledger record, 1 caller (anchor)",
               gated, "reads/s",
               anchor=f"the anchor; {anchor['gated_cpu_us']:,.0f} µs CPU each; decide alone {anchor['decide']:,.0f}/s; "
                      f"Gateway.read (request built, checks, gate) {anchor['gateway']:,.0f}/s; {load}"),
        result("HTTP gateway read GET /v1/records/… (ztcp serve, 1 process, 32 connections, wrk, 1 thread; "
               "16 officers, each their own case's record)", at32["rps"], "req/s",
               target="≥ 1,000 req/s", ok=at32["rps"] >= 1000, p50_ms=round(at32["p50_ms"], 2),
               p99_ms=round(at32["p99_ms"], 2), errors=0, pii_reads=at32["pii_reads"],
               anchor=f"{at32['rps'] / gated:.2f}× the in-process read path ({gated:,.0f}/s); p50 "
                      f"{at32['p50_ms']:.1f} ms, p99 {at32['p99_ms']:.1f} ms; 0 errors; {at32['total']:,} reads "
                      f"answered, {at32['pii_reads']:,} pii.read recorded; {load}"),
        result("HTTP gateway read, latency at 8 connections", at8["p99_ms"], "ms p99",
               anchor=f"p50 {at8['p50_ms']:.1f} ms at {at8['rps']:,.0f} req/s; 0 errors; {at8['total']:,} answered, "
                      f"{at8['pii_reads']:,} pii.read recorded"),
    ]
    return write("gateway", rows, quick=quick)


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv, profile="--profile" in sys.argv))
