"""Replicas of one ztcp deployment in one test process: ``Runtime``s with homes of their own, the
same keys and bureau feed, optionally one shared database (ZTCP_DATABASE_URL), and one clock.

Shared by the decision point's replica tests (tests/pdp/test_cluster.py, test_policy_replicas.py)
and meant for the cluster test of issue #12; load it with ``importlib`` (the suite runs in
importlib mode). Pair it with ``pdp.replay`` to compare what replicas computed with one process.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from server.runtime import BUREAU_DATA_FILE, Runtime
from server.settings import load_settings

TAIPEI = {"lat": 25.03, "lon": 121.56, "country": "TW"}
FRANKFURT = {"lat": 50.11, "lon": 8.68, "country": "DE"}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_until(predicate, timeout: float = 10.0) -> float:  # noqa: ANN001
    """Seconds until ``predicate()`` held (fails the test after ``timeout``)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.0005)
    return time.monotonic() - started


def citizen(i: int) -> str:
    return "cr_" + format(i, "b").replace("0", "A").replace("1", "B").rjust(52, "C")


SAMPLE = "cr_SAMPLEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"
# The bureau's live feed: each officer of the traffic works one open case on the sample citizen.
CASES = {f"C-2026-01{n:02d}": {"assignees": [f"emp-{n}"], "citizen_ref": SAMPLE, "purposes": ["benefit_review"],
                                "status": "open", "sealed": False, "org_unit": "taipei-03"} for n in (1, 2, 3)}


def replicas(tmp_path: Path, clock: Clock, database_url: str | None, n: int = 2) -> list[Runtime]:
    """``n`` runtimes with homes of their own, the same keys and the same bureau feed (replicas of
    one deployment)."""
    (tmp_path / "r0").mkdir(mode=0o700)
    first = Runtime(load_settings(home=tmp_path / "r0", database_url=database_url, engine_timeout_ms=2000),
                    clock=clock)
    first.keys.ensure_all()
    out = [first]
    for k in range(1, n):
        home = tmp_path / f"r{k}"
        home.mkdir(mode=0o700)
        for name in ("master.key", "keyring.sealed"):
            if (first.home / name).exists():
                shutil.copy2(first.home / name, home / name)
        out.append(Runtime(load_settings(home=home, database_url=database_url, engine_timeout_ms=2000), clock=clock))
    for rt in out:
        (rt.home / BUREAU_DATA_FILE).write_text(json.dumps({"cases": CASES}))
        rt.point  # noqa: B018 - started, as `ztcp serve` starts it: following the others from now on
    return out


def request(rt: Runtime, clock: Clock, sub: str, *, method: str = "fido2", mfa: bool = True, **overrides) -> dict:
    token = rt.issuer.issue_subject(sub, ["case_officer"], method=method, mfa=mfa, org_unit="taipei-03",
                                    now=clock.now)
    doc = {
        "subject_token": token,
        "device": {"id": "dev-1", "managed": True, "compliant": True,
                   "posture": {"baseline_ok": True, "edr_running": True, "disk_encrypted": True,
                               "patch_age_days": 5}},
        "context": {"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter", "geo": TAIPEI},
        "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": "r-1",
                     "citizen_ref": SAMPLE, "fields": ["name", "address"], "classification": "personal"},
        "action": "read",
        "purpose": {"code": "benefit_review", "case_id": f"C-2026-01{int(sub.split('-')[1]):02d}"},
    }
    for key, value in overrides.items():
        doc[key] = {**doc[key], **value} if isinstance(value, dict) and isinstance(doc.get(key), dict) else value
    return doc
