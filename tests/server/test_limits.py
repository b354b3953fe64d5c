"""Request-body limit and the event loop (issue #13, finding 7)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.serving import wait_ready, ztcp  # noqa: E402


@pytest.fixture
def rt(ztcp_home: Path):
    runtime = Runtime(load_settings(max_body_bytes=64 * 1024))
    yield runtime
    runtime.close()


def test_an_oversized_body_is_413_before_authentication(rt: Runtime) -> None:
    with TestClient(create_app(rt)) as client:
        big = b"{" + b" " * (65 * 1024) + b"}"
        r = client.post("/v1/decisions", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        # Without a token a small body is a 401: the 413 came first, before any token was looked at.
        assert client.post("/v1/decisions", content=b"{}", headers={"content-type": "application/json"}
                           ).status_code == 401

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(100):
                yield b" " * 1024

        r = client.post("/v1/decisions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413



def test_a_caller_in_order_is_held_to_the_limit_too(rt: Runtime) -> None:
    """With a valid decide token the decision lane reads the body itself: BodyLimit, outside it,
    still counts every chunk and answers 413, and nothing is decided — even for a request that is
    in order but for the whitespace it is padded with."""
    caller = rt.issuer.issue_client("counter-app", ["pdp:decide"])
    subject = rt.issuer.issue_subject("emp-1", ["case_officer"], method="fido2", mfa=True)
    doc = json.dumps({"subject_token": subject, "device": {"id": "dev-1"}, "context": {"network_zone": "internal"},
                      "resource": {"type": "record", "dataset": "insured_persons", "fields": ["name"]},
                      "action": "read", "purpose": {"code": "benefit_review"}}).encode()
    auth = {"authorization": f"Bearer {caller}", "content-type": "application/json"}

    def decided() -> float:
        return sum(rt.metrics.registry.get_sample_value("ztcp_decisions_total", {"effect": effect}) or 0.0
                   for effect in ("permit", "step_up", "deny"))

    with TestClient(create_app(rt)) as client:
        assert client.post("/v1/decisions", content=doc, headers=auth).status_code == 200
        before = decided()

        def chunks():  # no Content-Length: the lane is reading when the limit is crossed
            yield doc
            for _ in range(70):
                yield b" " * 1024

        r = client.post("/v1/decisions", content=chunks(), headers=auth)
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        assert decided() == before


def test_a_large_batch_does_not_stall_health_checks(ztcp_home: Path, unused_tcp_port: int) -> None:
    # `ztcp serve` in its own process, as deployed: a client and a server sharing one interpreter's
    # GIL would measure the test harness's thread switching, not the server's event loop.
    env = {**os.environ, "ZTCP_HOME": str(ztcp_home), "ZTCP_PORT": str(unused_tcp_port)}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        wait_ready(base, server)
        caller = ztcp(env, "token", "issue", "--client", "counter-app", "--scope", "pdp:decide").stdout.strip()
        subject = ztcp(env, "token", "issue", "--sub", "emp-1", "--role", "case_officer", "--method", "fido2",
                       "--mfa").stdout.strip()
        assert caller and subject
        one = {"subject_token": subject, "device": {"id": "dev-1"}, "context": {"network_zone": "internal"},
               "resource": {"type": "record", "dataset": "insured_persons", "fields": ["name"]},
               "action": "read", "purpose": {"code": "benefit_review"}}
        body = json.dumps({"requests": [one] * 1000}).encode()  # ~0.8 MB: within the default body limit

        async def one_round(client: httpx.AsyncClient) -> tuple[int, float, float]:
            began = time.perf_counter()
            batch = asyncio.create_task(client.post("/v1/decisions/batch", content=body, headers={
                "authorization": f"Bearer {caller}", "content-type": "application/json"}))
            worst = 0.0
            while not batch.done():
                t0 = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                worst = max(worst, time.perf_counter() - t0)
                await asyncio.sleep(0.01)
            return (await batch).status_code, worst, time.perf_counter() - began

        async def probe() -> list[tuple[int, float, float]]:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                return [await one_round(client) for _ in range(3)]

        rounds = asyncio.run(probe())
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert [status for status, _, _ in rounds] == [200, 200, 200]
    # On the event loop the batch would hold /healthz for the rest of its run, in every round; in the
    # thread pool a health check waits a few GIL switches. The median round judges, so one scheduling
    # hiccup of this shared machine does not decide (relative: its speed varies).
    _, worst, took = sorted(rounds, key=lambda r: r[1] / r[2])[1]
    assert took > 0.2 and worst < took / 3, f"/healthz took {worst:.3f} s while the {took:.3f} s batch ran"
