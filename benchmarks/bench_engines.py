"""Rego engines on the default pack, same inputs, same run: OPA v1 itself vs regorus' two modes.

- OPA: the Go library in process (``policy.opa``, opa-golib-python-bindings, OPA v1.20); the
  binding prepares the query once and reuses it, so each call is input JSON in → evaluation →
  result JSON out through ctypes;
- regorus RVM bytecode and regorus tree interpreter, as the PDP runs them (``pdp.engine.RegorusEngine``,
  mode ``rvm`` / ``interpreter``: set input + evaluate ``data.ztcp.authz.decision``).

Two input sets: the permit scenario the PDP benchmark uses (one well-formed decision, repeated),
and the conformance corpus (the pack's ``conformance/*.json`` plus 500 seeded malformed variants of
them: what a buggy or hostile caller sends). On the corpus the three engines' decisions are also
compared: the README's engine table reports that agreement as measured here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.common import result, write
from pdp.engine import RegorusEngine, conformance_inputs
from pdp.errors import EngineError
from policy import load_pack
from policy.conformance import mutations
from policy.opa import OpaLibrary, available

PERMIT = {
    "subject": {"id": "emp-0042", "type": "employee", "roles": ["case_officer"], "org_unit": "taipei-03",
                "citizen_ref": None, "auth": {"method": "fido2", "mfa": True, "auth_time": 1795300000,
                                              "token_age_s": 60}},
    "device": {"id": "dev-1", "managed": True, "compliant": True,
               "posture": {"baseline_ok": True, "edr_running": True, "disk_encrypted": True, "patch_age_days": 5}},
    "context": {"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter",
                "time": "2026-11-22T10:00:00+08:00", "geo": {"lat": 25.03, "lon": 121.56, "country": "TW"}},
    "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                 "citizen_ref": "cr_SAMPLEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
                 "fields": ["name", "address", "bank_account"], "classification": "personal"},
    "action": "read",
    "purpose": {"code": "benefit_review", "case_id": "C-2026-0001", "legal_basis": None, "consent_id": None,
                "justification": None, "break_glass": False},
    "signals": {"auth_strength": 3, "token_age_s": 60, "recent_denies_1h": 0, "failed_step_ups_1h": 0,
                "device_first_seen": False, "off_hours": False, "holiday": False, "local_hour": 10,
                "impossible_travel": False, "travel_speed_kmh": 0, "request_rate_1m": 3,
                "distinct_citizens_10m": 2, "distinct_citizens_1h": 5, "first_dataset_access": False,
                "self_record": False},
}
MUTATIONS = 500
SEED = 20261205


def _best_us(fn: Callable[[dict], object], docs: list[dict], repeats: int) -> float:
    """Best of ``repeats`` passes over ``docs``, µs per evaluation (the least disturbed pass on a
    shared machine)."""
    for doc in docs[:50]:
        fn(doc)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for doc in docs:
            fn(doc)
        best = min(best, (time.perf_counter() - started) / len(docs))
    return best * 1e6


def _outcome(fn: Callable[[dict], object], doc: dict) -> object:
    try:
        return ("value", fn(doc))
    except EngineError:
        return ("error",)


def main(quick: bool = False) -> None:
    ok, why = available()
    if not ok:
        raise SystemExit(f"bench_engines needs the OPA library: {why}")
    pack = load_pack()
    opa = OpaLibrary(pack)
    rvm = RegorusEngine(pack, mode="rvm")
    interpreter = RegorusEngine(pack, mode="interpreter")

    def opa_eval(doc: dict) -> object:
        return opa.evaluate(doc)

    base = conformance_inputs(pack)
    corpus = base + mutations(base, MUTATIONS, SEED)
    opa_outcomes = [opa.outcome(doc) for doc in corpus]
    engines = {"RVM": lambda d: _outcome(rvm.evaluate, d), "interpreter": lambda d: _outcome(interpreter.evaluate, d)}
    outcomes = {name: [fn(doc) for doc in corpus] for name, fn in engines.items()}
    opa_plain = [("value", o.value) if o.kind == "value" else ("error",) for o in opa_outcomes]
    all_three = sum(a == b == c for a, b, c in zip(opa_plain, outcomes["RVM"], outcomes["interpreter"], strict=True))
    pairs = {
        "OPA = RVM": sum(a == b for a, b in zip(opa_plain, outcomes["RVM"], strict=True)),
        "OPA = interpreter": sum(a == b for a, b in zip(opa_plain, outcomes["interpreter"], strict=True)),
        "RVM = interpreter": sum(a == b for a, b in zip(outcomes["RVM"], outcomes["interpreter"], strict=True)),
    }

    permit = [PERMIT] * (200 if quick else 1000)
    repeats = 3 if quick else 7
    timings = {}
    for label, docs in (("permit scenario", permit), ("conformance corpus", corpus)):
        timings[label] = {
            "OPA": _best_us(opa_eval, docs, repeats),
            "RVM": _best_us(rvm.evaluate, docs, repeats),
            "interpreter": _best_us(interpreter.evaluate, docs, repeats),
        }
    opa.close()

    rows = [
        result("decisions identical under OPA v1.20, regorus RVM and interpreter (conformance corpus)",
               all_three, f"of {len(corpus)} inputs", target=f"all {len(corpus)}", ok=all_three == len(corpus),
               anchor="; ".join(f"{k}: {v}" for k, v in pairs.items())
               + f"; {len(base)} shipped + {MUTATIONS} seeded malformed"),
    ]
    for label, figures in timings.items():
        rows += [
            result(f"regorus RVM eval, default pack, {label}", figures["RVM"], "µs/eval",
                   anchor=f"OPA {figures['OPA']:.0f} µs, interpreter {figures['interpreter']:.0f} µs (same inputs)"),
            result(f"regorus interpreter eval, default pack, {label}", figures["interpreter"], "µs/eval",
                   anchor=f"{figures['interpreter'] / figures['RVM']:.1f}× the RVM"),
            result(f"OPA v1.20 library eval (prepared query, via ctypes), default pack, {label}", figures["OPA"],
                   "µs/eval", anchor=f"{figures['OPA'] / figures['RVM']:.1f}× the RVM"),
        ]
    write("engines", rows, quick=quick)
    for row in rows:
        print(f"{row['name']}: {row['value']} {row['unit']} ({row.get('anchor', '')})")


if __name__ == "__main__":
    main()
