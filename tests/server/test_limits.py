"""Request-body limit and the event loop (issue #13, finding 7)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings


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


def test_a_large_batch_does_not_stall_health_checks(rt: Runtime, unused_tcp_port: int) -> None:
    caller = rt.issuer.issue_client("counter-app", ["pdp:decide"])
    subject = rt.issuer.issue_subject("emp-1", ["case_officer"], method="fido2", mfa=True)
    one = {"subject_token": subject, "device": {"id": "dev-1"}, "context": {"network_zone": "internal"},
           "resource": {"type": "record", "dataset": "insured_persons", "fields": ["name"]}, "action": "read",
           "purpose": {"code": "benefit_review"}}
    body = json.dumps({"requests": [one] * 1000}).encode()
    big = Runtime(load_settings())  # default limit: the batch (~1 MB) fits
    server = uvicorn.Server(uvicorn.Config(create_app(big), host="127.0.0.1", port=unused_tcp_port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)

        async def probe() -> tuple[int, float]:
            base = f"http://127.0.0.1:{unused_tcp_port}"
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                batch = asyncio.create_task(client.post("/v1/decisions/batch", content=body, headers={
                    "authorization": f"Bearer {caller}", "content-type": "application/json"}))
                await asyncio.sleep(0.15)  # the batch is being decided now
                worst = 0.0
                while not batch.done():
                    t0 = time.perf_counter()
                    assert (await client.get("/healthz")).status_code == 200
                    worst = max(worst, time.perf_counter() - t0)
                    await asyncio.sleep(0.01)
                return (await batch).status_code, worst

        status, worst = asyncio.run(probe())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        big.close()
    assert status == 200
    assert worst < 0.25, f"/healthz took {worst:.3f} s while the batch ran"
