"""`ztcp demo seed` throughput: a simulated week through the real gateway (in process, HTTP semantics).

Figures: the whole seed's wall time, gateway requests/s and ledger events/s over the time spent in
gateway requests. Anchors, same run, same home, no HTTP: the decision point alone deciding the same
kind of read, and decide + decryption gate + durable ledger record (what the in-process HTTP stack,
Starlette's TestClient and FastAPI, adds is the difference).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import rate, result, write


def _anchors(settings, n: int) -> tuple[float, float]:  # noqa: ANN001 - Settings
    """(PDP decide alone, decide + decryption gate + durable ledger record) per second, no HTTP."""
    import sqlite3

    from contracts.decision import DecisionRequest
    from server.runtime import Runtime

    rt = Runtime(settings)
    try:
        home = rt.home
        cases = json.loads((home / "bureau-data.json").read_text())["cases"]
        staff = {s["id"]: s for s in json.loads((home / "directory.json").read_text())["staff"]}
        case_id, case = next((cid, c) for cid, c in cases.items() if c["status"] == "open"
                             and staff[c["assignees"][0]]["roles"] == ["case_officer"])
        officer = staff[case["assignees"][0]]
        assert rt.issuer is not None  # the demo home signs in with the development issuer
        token = rt.issuer.issue_subject(officer["id"], ["case_officer"], method="fido2", mfa=True,
                                        org_unit=officer["office"])
        with sqlite3.connect(home / "protected.db") as db:
            rid = db.execute("SELECT id FROM insured_persons WHERE citizen_ref = ?",
                             (case["citizen_ref"],)).fetchone()[0]
        request = DecisionRequest.model_validate({
            "subject_token": token, "device": {"id": officer["device"]["id"], "managed": True, "compliant": True},
            "context": {"network_zone": "internal", "channel": "case_mgmt"},
            "resource": {"type": "record", "dataset": "insured_persons", "record_id": str(rid),
                         "citizen_ref": case["citizen_ref"], "fields": ["name", "address"]},
            "action": "read", "purpose": {"code": case["purposes"][0], "case_id": case_id}})
        point = rt.point
        reader = rt.protected_reader("insured_persons")
        assert reader is not None  # the demo seeds insured_persons

        def decide_and_read() -> None:
            decision = point.decide(request)
            reader.read(decision.token, rid, ["name", "address"], purpose=case["purposes"][0])

        return rate(lambda: point.decide(request), n), rate(decide_and_read, n // 2)
    finally:
        rt.close()


def main(quick: bool = False) -> Path:
    from demo import SeedOptions, seed
    from server.settings import load_settings

    citizens, days = (300, 3) if quick else (2000, 7)
    # The quick run ends on the latest Friday evening so its window always holds working days.
    end = None
    if quick:
        end = time.time()
        while time.gmtime(end).tm_wday != 4:
            end -= 86400
        end -= end % 86400 - 10 * 3600  # Friday 10:00 UTC = 18:00 in Taipei
    with tempfile.TemporaryDirectory(prefix="ztcp-bench-demo-") as tmp:
        settings = load_settings(home=Path(tmp) / "home", engine_timeout_ms=2000)
        started = time.perf_counter()
        report = seed(settings, SeedOptions(citizens=citizens, days=days, seed=7, end=end))
        wall = time.perf_counter() - started
        decide, gated = _anchors(settings, 500 if quick else 3000)
    size = f"{citizens} citizens × {days} days, {report.requests} requests"
    rows = [
        result("demo seed, whole run", wall, "s", target="a few minutes for the default (2000 × 7)",
               ok=None if quick else wall <= 300, anchor=size, phases=report.seconds),
        result("gateway requests through the demo", report.requests_per_second, "req/s",
               anchor=f"same read without HTTP: PDP decide {decide:,.0f}/s; decide + decryption gate + "
                      f"durable ledger record {gated:,.0f}/s"),
        result("ledger events recorded through the gateway", report.events_per_second, "events/s",
               anchor=f"{sum(report.events.values())} events; reads {report.reads} = pii.read "
                      f"{report.read_events}"),
    ]
    if report.missed:
        raise SystemExit(f"demo seed missed incidents: {[i.name for i in report.missed]}")
    return write("demo", rows, quick=quick)


if __name__ == "__main__":
    import sys

    print(main(quick="--quick" in sys.argv))
