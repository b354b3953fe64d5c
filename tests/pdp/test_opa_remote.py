"""The remote-OPA engine (``ZTCP_OPA_URL``, opa-python-client) against an OPA REST API on loopback.

The server is started by the test on 127.0.0.1 and answers the part of OPA's REST API the engine
uses — ``POST /v1/data/{path}``, ``PUT``/``DELETE /v1/policies/{id}``, ``GET /v1/policies``,
``PUT``/``DELETE /v1/data/{path}``, ``GET /health`` — by evaluating with OPA v1 itself (the Go
library, ``policy.opa``), so what is pushed and decided is what a real OPA would compile and decide.
Marked ``opa``: skipped, with the reason, only when the library cannot load. A test against a real
OPA server runs when ``ZTCP_OPA_URL`` is set (marker ``opa_server``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pdp.engine import GuardedEngine, OpaEngine, RegorusEngine, conformance_inputs, create_engine
from pdp.errors import ConfigurationError, EngineError, EngineTimeout, NoPolicy
from policy import PolicyPack, load_pack, pack_from_files
from policy.conformance import mutations
from policy.opa import available, load_bindings

_OK, _WHY = available()
needs_opa = pytest.mark.skipif(not _OK, reason=f"OPA library cannot load: {_WHY}")


class OpaRestServer:
    """A loopback OPA REST API over the in-process OPA library (one engine rebuilt on each change)."""

    def __init__(self) -> None:
        self.policies: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        self.delay_s = 0.0  # slows decisions, for the timeout test
        self.fail_decisions = False
        self._engine: Any = None
        self._lock = threading.Lock()
        server = self
        bindings = load_bindings()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

            def _reply(self, status: int, body: Any = None) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(("GET", self.path))
                if self.path.startswith("/health"):
                    self._reply(200, {})
                elif self.path.rstrip("/") == "/v1/policies":
                    listed = [{"id": pid, "raw": src} for pid, src in sorted(server.policies.items())]
                    self._reply(200, {"result": listed})
                else:
                    self._reply(404, {"code": "resource_not_found", "message": self.path})

            def do_PUT(self) -> None:  # noqa: N802
                server.requests.append(("PUT", self.path))
                raw = self._body()
                if self.path.startswith("/v1/policies/"):
                    pid = self.path.removeprefix("/v1/policies/")
                    error = server.change(policies={**server.policies, pid: raw.decode()})
                    if error:  # OPA refuses a module that does not compile with the rest
                        self._reply(400, {"code": "invalid_parameter", "message": error, "errors": []})
                    else:
                        self._reply(200, {})
                elif self.path.startswith("/v1/data/"):
                    parts = [p for p in self.path.removeprefix("/v1/data/").split("/") if p]
                    data = json.loads(json.dumps(server.data))
                    node = data
                    for part in parts[:-1]:
                        node = node.setdefault(part, {})
                    node[parts[-1]] = json.loads(raw)
                    server.change(data=data)
                    self._reply(204)
                else:
                    self._reply(404, {"code": "resource_not_found", "message": self.path})

            def do_DELETE(self) -> None:  # noqa: N802
                server.requests.append(("DELETE", self.path))
                if self.path.startswith("/v1/policies/"):
                    pid = self.path.removeprefix("/v1/policies/")
                    if pid not in server.policies:
                        self._reply(404, {"code": "resource_not_found", "message": pid})
                        return
                    error = server.change(policies={k: v for k, v in server.policies.items() if k != pid})
                    if error:  # OPA refuses to delete a module the others still need
                        self._reply(400, {"code": "invalid_parameter", "message": error})
                    else:
                        self._reply(200, {})
                elif self.path.startswith("/v1/data/"):
                    key = self.path.removeprefix("/v1/data/").strip("/")
                    if key not in server.data:
                        self._reply(404, {"code": "resource_not_found", "message": key})
                        return
                    server.change(data={k: v for k, v in server.data.items() if k != key})
                    self._reply(204)
                else:
                    self._reply(404, {"code": "resource_not_found", "message": self.path})

            def do_POST(self) -> None:  # noqa: N802
                server.requests.append(("POST", self.path))
                body = json.loads(self._body() or b"{}")
                if not self.path.startswith("/v1/data/"):
                    self._reply(404, {"code": "resource_not_found", "message": self.path})
                    return
                time.sleep(server.delay_s)
                if server.fail_decisions:
                    self._reply(500, {"code": "internal_error", "message": "injected"})
                    return
                path = self.path.removeprefix("/v1/data/").split("?")[0].strip("/").replace("/", ".")
                with server._lock:
                    engine = server._engine
                    try:
                        value = engine.eval_document(path, body.get("input"))
                    except bindings.OpaUndefinedError:
                        self._reply(200, {})  # OPA's answer for an undefined document: no "result"
                        return
                    except bindings.OpaError as exc:
                        self._reply(500, {"code": "internal_error", "message": str(exc)})
                        return
                self._reply(200, {"result": value})

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out (the timeout test) closed its end: nothing to report

        self._bindings = bindings
        self.change()
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def change(self, *, policies: dict[str, str] | None = None, data: dict | None = None) -> str | None:
        """Rebuild the engine with new policies or data; an error message (nothing changed) or None."""
        policies = self.policies if policies is None else policies
        data = self.data if data is None else data
        engine = self._bindings.OpaEngine()
        try:
            for pid, source in sorted(policies.items()):
                engine.add_policy(pid, source)
            if data:
                engine.add_data(data)
            engine.eval_query("x := 1")  # compiles the modules together: OPA checks them on upload
        except self._bindings.OpaError as exc:
            engine.close()
            return str(exc)
        with self._lock:
            old, self._engine = self._engine, engine
            self.policies, self.data = policies, data
        if old is not None:
            old.close()
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._engine.close()


@pytest.fixture
def opa_server() -> Iterator[OpaRestServer]:
    server = OpaRestServer()
    yield server
    server.close()


PACK = load_pack()
BUREAU = PACK.data["bureau"]


_spec = importlib.util.spec_from_file_location("engine_cases", Path(__file__).with_name("test_engine.py"))
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)


def _inputs(pack: PolicyPack) -> list[dict]:
    """The engine tests' scenarios (every effect), shipped conformance inputs, malformed variants."""
    base = _cases.SCENARIOS + conformance_inputs(pack)[:20]
    return base + mutations(base, 40, seed=5)


pytestmark = [pytest.mark.opa, needs_opa]


# Decisions are compared with a generous HTTP budget: under a loaded CI machine one request to the
# library-backed server can exceed the PDP's 50 ms, which test_slow_opa_times_out covers on purpose.
GENEROUS_S = 5.0


def test_create_engine_pushes_the_pack(opa_server: OpaRestServer):
    remote = create_engine(PACK, "opa", opa_url=opa_server.url, opa_push=True, extra_data={"bureau": BUREAU})
    assert isinstance(remote, OpaEngine) and remote.root.startswith("ztcp_") and remote.digest == PACK.digest
    assert remote.healthy()
    assert ("PUT", f"/v1/data/{remote.root}") in opa_server.requests
    assert ("PUT", "/v1/data/bureau") in opa_server.requests
    assert sorted(opa_server.policies) == sorted(f"{remote.root}/{p}" for p in PACK.policy_modules)
    last_put = max(i for i, r in enumerate(opa_server.requests) if r[0] == "PUT")
    warm_up = ("POST", f"/v1/data/{remote.root}/authz/decision")
    assert warm_up in opa_server.requests[last_put:]  # one decision once uploaded, before any traffic


def test_pushed_pack_decides_like_the_embedded_engine(opa_server: OpaRestServer):
    remote = OpaEngine(opa_server.url, timeout_s=GENEROUS_S, pack=PACK, push=True, extra_data={"bureau": BUREAU})
    local = RegorusEngine(PACK, extra_data={"bureau": BUREAU})
    docs = _inputs(PACK)
    differ = [i for i, doc in enumerate(docs) if remote.evaluate(doc) != local.evaluate(doc)]
    assert differ == []
    effects = {remote.evaluate(doc)["effect"] for doc in docs}
    assert effects == {"permit", "step_up", "deny"}


def test_a_new_revision_is_pushed_beside_the_old_and_the_old_is_removed(opa_server: OpaRestServer):
    # A generous budget for the old engine: the library-backed server prepares a query for a path
    # the first time it sees it, which a real OPA answering "undefined" would not need.
    first = OpaEngine(opa_server.url, timeout_s=GENEROUS_S, pack=PACK, push=True)
    doc = _cases.SCENARIOS[2]  # unmanaged device, from the internet, at night
    assert first.evaluate(doc)["risk"]["score"] == RegorusEngine(PACK).evaluate(doc)["risk"]["score"]
    config = json.loads(PACK.files["ztcp/config/data.json"])
    config["risk"]["weights"]["unmanaged_device"] = 60
    files = {**PACK.files, "ztcp/config/data.json": json.dumps(config).encode()}
    second_pack = pack_from_files(files)
    second = OpaEngine(opa_server.url, timeout_s=GENEROUS_S, pack=second_pack, push=True)
    assert second.root != first.root
    assert all(pid.startswith(second.root + "/") for pid in opa_server.policies)
    assert first.root not in opa_server.data and second.root in opa_server.data
    # Deleting the old root made OPA recompile: the new root was warmed again after that.
    last_delete = max(i for i, r in enumerate(opa_server.requests) if r[0] == "DELETE")
    assert ("POST", f"/v1/data/{second.root}/authz/decision") in opa_server.requests[last_delete:]
    assert second.evaluate(doc) == RegorusEngine(second_pack).evaluate(doc)
    assert second.evaluate(doc) != RegorusEngine(PACK).evaluate(doc)  # the change took effect
    with pytest.raises(NoPolicy):  # the old revision is gone: its engine can only deny
        first.evaluate(doc)


def test_bundle_pulling_opa_is_queried_at_ztcp(opa_server: OpaRestServer):
    """Without push the engine asks data.ztcp.authz.decision, where OPA serves our bundle."""
    assert opa_server.change(policies=dict(PACK.policy_modules), data=dict(PACK.data)) is None
    remote = OpaEngine(opa_server.url, timeout_s=GENEROUS_S)  # no push, so no warm-up before the 1st query
    assert remote.root == "ztcp" and remote.digest is None
    assert not [r for r in opa_server.requests if r[0] == "PUT"]  # nothing uploaded
    doc = _inputs(PACK)[1]
    assert remote.evaluate(doc) == RegorusEngine(PACK).evaluate(doc)


def test_empty_opa_is_no_policy(opa_server: OpaRestServer):
    remote = OpaEngine(opa_server.url, timeout_s=GENEROUS_S)
    with pytest.raises(NoPolicy):
        remote.evaluate({})


def test_failing_opa_is_an_engine_error_and_a_deny(opa_server: OpaRestServer):
    remote = OpaEngine(opa_server.url, timeout_s=GENEROUS_S, pack=PACK, push=True)
    opa_server.fail_decisions = True
    before = len(opa_server.requests)
    with pytest.raises(EngineError, match="HTTP 500"):
        remote.evaluate({})
    assert opa_server.requests[before:] == [("POST", f"/v1/data/{remote.root}/authz/decision")]  # no retries


def test_slow_opa_times_out(opa_server: OpaRestServer):
    remote = OpaEngine(opa_server.url, timeout_s=0.1, pack=PACK, push=True)
    opa_server.delay_s = 0.5
    with pytest.raises(EngineTimeout):
        remote.evaluate({})
    guard = GuardedEngine(remote, timeout_ms=100)
    try:
        started = time.perf_counter()
        with pytest.raises(EngineTimeout):
            guard.evaluate({})
        assert time.perf_counter() - started < 0.4
    finally:
        guard.close()


def test_a_module_opa_refuses_fails_the_push(opa_server: OpaRestServer):
    broken = pack_from_files({**PACK.files, "ztcp/extra.rego": b"package ztcp.extra\nimport rego.v1\nx := y\n"})
    with pytest.raises(EngineError, match="pushing the policy to OPA failed"):
        create_engine(broken, "opa", opa_url=opa_server.url, opa_push=True)


@pytest.mark.parametrize("url", ["opa.internal:8181", "http://opa.internal:8181/prefix", "ftp://opa"])
def test_opa_url_must_be_a_plain_origin(url: str):
    with pytest.raises(ConfigurationError):
        OpaEngine(url)


@pytest.mark.opa_server
@pytest.mark.skipif(not os.environ.get("ZTCP_OPA_URL"), reason="needs a running OPA server: set ZTCP_OPA_URL")
def test_real_opa_server_decides_like_the_embedded_engine():
    """Pushes the pack (under its own digest-named root, leaving served bundles alone) to a real
    OPA server and compares decisions."""
    remote = OpaEngine(os.environ["ZTCP_OPA_URL"], timeout_s=5, pack=PACK, push=True)
    local = RegorusEngine(PACK)
    for doc in _inputs(PACK):
        assert remote.evaluate(doc) == local.evaluate(doc)
