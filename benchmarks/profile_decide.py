"""Where the time goes per decision, in µs: `python -m benchmarks.profile_decide [--label NAME]`.

Writes ``benchmarks/profiles/decide-<label>.txt``: each stage of ``DecisionPoint.decide`` timed on its
own (CPU time of the calling thread, best of several passes: the machine is shared, and CPU time is
what a stage costs wherever it runs), the decision-log writer's share (it runs on another thread but
under the same GIL, so it is paid by the same core), and a cProfile summary of the whole call.
The permit scenario is the in-process benchmark's (``bench_pdp.request_doc``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.bench_pdp import request_doc
from contracts.decision import DecisionRequest
from pdp.calendar import BusinessCalendar
from pdp.decision_log import DecisionLog
from pdp.engine import create_engine
from pdp.identity import JwtVerifier, StaticKeySource
from pdp.issuer import DevIssuer
from pdp.point import ActivePolicy, DecisionPoint, build_input, log_entry
from pdp.signals import SignalHistory
from pdp.tokens import DecisionTokenSigner
from policy import load_pack

PROFILES = Path(__file__).resolve().parent / "profiles"


def _cpu_us(fn, n: int, passes: int = 5) -> float:
    """Best-of-``passes`` CPU µs per call of ``fn`` on this thread."""
    for _ in range(min(200, n)):
        fn()
    best = float("inf")
    for _ in range(passes):
        start = time.thread_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time_ns() - start) / n / 1000)
    return best


def profile(n: int = 3000) -> str:
    pack = load_pack()
    issuer = DevIssuer(Ed25519PrivateKey.generate(), "https://idp.bench", "ztcp")
    verifier = JwtVerifier(StaticKeySource(issuer.jwks), "https://idp.bench", "ztcp")
    engine = create_engine(pack, "regorus", revision="bench")
    calendar = BusinessCalendar.from_config(pack.data.get("ztcp", {}).get("config", {}).get("calendar"))
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = DecisionLog(Path(tmp) / "decisions.db")
        history = SignalHistory(Path(tmp) / "signals.db")
        active = ActivePolicy(engine, calendar)
        point = DecisionPoint(verifier=verifier, signer=DecisionTokenSigner(Ed25519PrivateKey.generate(), "b"),
                              log=log, history=history, active=active)
        token = issuer.issue_subject("emp-0042", ["case_officer"], method="fido2", mfa=True, ttl_seconds=3600)
        body = orjson.dumps(request_doc(token))
        req = DecisionRequest.model_validate_json(body)
        now = time.time()
        subject = verifier.verify_subject(token)
        signals = history.compute(subject, req, now, calendar)
        input_doc = build_input(subject, req, signals, now, calendar)
        result = engine.evaluate(input_doc)
        decision = point._decision("0193a1b2-c3d4-7e5f-8a9b-000000000000", now, req, subject, result, active)
        entry = log_entry(decision, input_doc, now, "bench", active, 1000, time.perf_counter(), None)
        claims = {"jti": decision.decision_id, "sub": subject.id, "effect": "permit", "action": "read",
                  "citizen_ref": req.resource.citizen_ref, "dataset": req.resource.dataset,
                  "record_id": req.resource.record_id, "fields": decision.permitted_fields,
                  "purpose": req.purpose.code, "case_id": req.purpose.case_id,
                  "obligations": decision.obligations, "rev": "bench"}
        signer = point.signer
        vm_json = orjson.dumps(input_doc).decode()
        stages = [
            ("parse + validate the JSON body (HTTP path only)", lambda: DecisionRequest.model_validate_json(body)),
            ("subject token (verified-token cache hit)", lambda: verifier.verify_subject(token)),
            ("signals (history.compute)", lambda: history.compute(subject, req, now, calendar)),
            ("policy input (build_input)", lambda: build_input(subject, req, signals, now, calendar)),
            ("engine: serialise input (orjson)", lambda: orjson.dumps(input_doc)),
            ("engine: evaluate (RegorusEngine.evaluate, whole)", lambda: engine.evaluate(input_doc)),
            ("token: sign (Ed25519 compact JWS)", lambda: signer.sign(claims, now=int(now))),
            ("decision object incl. token (_decision)",
             lambda: point._decision("0193a1b2-c3d4-7e5f-8a9b-000000000000", now, req, subject, result, active)),
            ("decision-log entry (log_entry)",
             lambda: log_entry(decision, input_doc, now, "bench", active, 1000, time.perf_counter(), None)),
            ("decision-log writer per entry (other thread, same GIL)",
             lambda: orjson.dumps(entry)),
            ("decision JSON for the HTTP answer", lambda: decision.__pydantic_serializer__.to_json(decision)),
        ]
        del vm_json
        rows = [(name, _cpu_us(fn, n)) for name, fn in stages]
        whole = _cpu_us(lambda: point.decide(req), n)
        log.flush()
        # the writer's real per-entry cost: one batch of its SQLite insert, measured on this thread
        entries = [{**entry, "decision_id": f"{i:036d}"} for i in range(2000)]
        start = time.thread_time_ns()
        for i in range(0, len(entries), 256):
            log.store.write(entries[i:i + 256])  # what the writer thread does with each batch
        writer_us = (time.thread_time_ns() - start) / len(entries) / 1000
        engine_us = dict(rows)["engine: evaluate (RegorusEngine.evaluate, whole)"]
        out.append(f"decide, whole (thread CPU, best of 5 × {n}): {whole:8.1f} µs")
        out.append(f"  of which engine evaluate:                   {engine_us:8.1f} µs "
                   f"({engine_us / whole:.0%}; around the engine {whole - engine_us:.1f} µs = "
                   f"{(whole - engine_us) / whole:.0%})")
        out.append(f"decision-log writer, SQLite insert per entry (its own thread): {writer_us:.1f} µs")
        out.append("")
        out.append("stage (each timed alone, µs per call)")
        for name, us in rows:
            out.append(f"  {name:60s} {us:8.1f}")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            point.decide(req)
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        out.append("")
        out.append(f"cProfile of {n} decide() calls, by own time (cProfile inflates Python-level calls):")
        out.extend(line for line in text.getvalue().splitlines() if line.strip()
                   and not line.startswith(("   Ordered", "   List reduced")))
        log.close()
        history.close()
        point.close()
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_decide")
    parser.add_argument("--label", default="current")
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    text = profile(args.n)
    PROFILES.mkdir(exist_ok=True)
    path = PROFILES / f"decide-{args.label}.txt"
    path.write_text(f"# python -m benchmarks.profile_decide --label {args.label}  ({time.strftime('%Y-%m-%d')})\n"
                    + text)
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
