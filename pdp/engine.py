"""Policy engines behind one small interface, and the fail-closed guard around them.

``regorus`` (Rust, in process; the default, chosen by benchmark: ~17 µs vs ~1.5 ms per evaluation for
regopy on the same policy) and ``regopy`` (Microsoft rego-cpp) evaluate the pack in process; ``opa``
asks a remote OPA (``ZTCP_OPA_URL``) that pulled our signed bundle, or to which we pushed the pack
(``ZTCP_OPA_PUSH``). All answer the same query with the same input; the pack is kept portable so
that they also give the same answer (``tests/policy/test_opa_conformance.py`` checks OPA itself).
The only registry build of regorus is a third-party fork (``gordon-to-regorus``): pinned, and
swappable for regopy by one setting, ``ZTCP_ENGINE=regopy``.

:class:`GuardedEngine` is the only way the PDP calls an engine: any exception, a result of the wrong
shape, or an evaluation exceeding its budget raises :class:`EngineError`, which the decision point
turns into ``deny``. A hung evaluation cannot hold a request: the caller stops waiting at the
deadline (the worker finishes or stays stuck on its own).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import requests
from opa_client import OpaClient
from opa_client.errors import DeleteDataError, DeletePolicyError, RegoParseError

from pdp.errors import ConfigurationError, EngineError, EngineTimeout, NoPolicy
from policy import PolicyPack
from policy.conformance import mutations

log = logging.getLogger("ztcp.pdp.engine")
QUERY = "data.ztcp.authz.decision"
ENGINE_KINDS = ("regorus", "regorus-interpreter", "regopy", "opa")
# The start-up gate's malformed inputs: a fixed, seeded set (same pack → same inputs → same choice
# of mode on every start), mutated from the pack's conformance inputs (policy.conformance).
GATE_MUTATIONS = 120
GATE_SEED = 17
# Gate verdicts by (pack digest, data digest): both modes are deterministic, so the same pack and
# data get the same verdict; a reload of an unchanged revision does not pay ~0.2 s again.
_GATE_VERDICTS: dict[tuple[str, str], bool] = {}
_GATE_VERDICTS_MAX = 64


class Engine(Protocol):
    # Read-only here, so that an engine may narrow them (a pack's digest is never None).
    @property
    def kind(self) -> str: ...

    @property
    def revision(self) -> str | None: ...

    @property
    def digest(self) -> str | None: ...

    def evaluate(self, input_doc: Mapping[str, Any]) -> dict[str, Any]:
        """The policy's decision object for ``input_doc`` (its shape is checked by :func:`check_result`)."""
        ...


def _rust_message(exc: BaseException) -> str:
    """regorus errors carry a Rust backtrace after the message: keep the message only."""
    text = str(exc).split("Stack backtrace:")[0].strip()
    return text or type(exc).__name__


def _merge_data(pack: PolicyPack, extra: dict[str, Any] | None) -> dict[str, Any]:
    data = dict(pack.data)
    for key, value in (extra or {}).items():
        data[key] = value  # operational data (data.bureau) replaces the pack's sample
    return data


_THREAD = threading.local()
_LIVE: set[int] = set()
_KEYS = itertools.count(1)


def _thread_cache() -> dict[int, Any]:
    """This thread's compiled engines, by engine key.

    regorus engines are "unsendable": pinned to the thread that made them, including when they are
    dropped. So they live in a dict owned by the thread itself (freed with the thread), never in
    an object that another thread may garbage-collect; stale entries are pruned by their own thread.
    """
    cache = getattr(_THREAD, "engines", None)
    if cache is None:
        cache = _THREAD.engines = {}
    return cache


def release_thread_engines() -> None:
    """Drop this thread's compiled engines; call it before a thread that evaluated policy ends."""
    _thread_cache().clear()


class RegorusEngine:
    """regorus, compiled to its RVM bytecode when the pack allows it, else its tree interpreter.

    The RVM runs the default pack about 7× faster than the interpreter with identical results (the
    pack keeps to the RVM-compilable subset and its conformance test compares both). A pack using a
    construct the RVM compiler lacks still loads, on the interpreter, and ``mode`` says which.
    """

    kind = "regorus"
    bounded = True  # pure in-process evaluation: GuardedEngine runs it inline (see _evaluate_inline)

    def __init__(self, pack: PolicyPack, *, revision: str | None = None, extra_data: dict[str, Any] | None = None,
                 mode: str = "auto") -> None:
        if mode not in ("auto", "rvm", "interpreter"):
            raise ConfigurationError(f"unknown regorus mode {mode!r}")
        self.revision = revision
        self.digest = pack.digest
        self._modules = sorted(pack.policy_modules.items())
        self._data = _merge_data(pack, extra_data)
        self._data_json = orjson.dumps(self._data).decode()
        self._program: bytes | None = None
        self.mode = "interpreter"
        if mode in ("auto", "rvm"):
            try:
                self._program = self._compile_program().serialize_binary()
                self.mode = "rvm"
            except (RuntimeError, ValueError) as exc:
                if mode == "rvm":
                    raise EngineError(f"policy does not compile to RVM: {_rust_message(exc)}") from None
                log.info("policy uses constructs the RVM cannot compile; using the interpreter: %s",
                         _rust_message(exc).splitlines()[0][:200])
        if self.mode == "rvm" and mode == "auto":
            key = (pack.digest, hashlib.sha256(self._data_json.encode()).hexdigest())
            if key not in _GATE_VERDICTS:
                if len(_GATE_VERDICTS) >= _GATE_VERDICTS_MAX:
                    _GATE_VERDICTS.clear()
                _GATE_VERDICTS[key] = self._gate_rvm(conformance_inputs(pack))
            if not _GATE_VERDICTS[key]:
                self._program, self.mode = None, "interpreter"
        self._key = next(_KEYS)
        _LIVE.add(self._key)
        weakref.finalize(self, _LIVE.discard, self._key)
        self._engine()  # compile errors surface at load time, not at the first request

    def _gate_rvm(self, inputs: list[dict[str, Any]]) -> bool:
        """Use the RVM only if it decides exactly like the interpreter on the pack's conformance
        inputs and on seeded malformed variants of them: the RVM is younger, and a construct it
        mis-compiles must not change a decision. False on a disagreement: the caller then uses the
        interpreter, the safer mode (it raises where the RVM has been seen to carry on)."""
        interpreter = RegorusEngine.__new__(RegorusEngine)
        interpreter.__dict__.update(self.__dict__)
        interpreter._program, interpreter.mode = None, "interpreter"
        interpreter._key = next(_KEYS)
        probe_rvm = self._compile()
        probe_interp = interpreter._compile()
        corpus = [*inputs, *mutations(inputs, GATE_MUTATIONS, GATE_SEED)]
        for index, doc in enumerate(corpus):
            try:
                probe_rvm.set_input_json(orjson.dumps(doc).decode())
                fast = _defined(orjson.loads(probe_rvm.execute()))
            except (RuntimeError, ValueError, TypeError):
                fast = _ERROR  # error texts differ between modes; both erring is agreement (deny)
            try:
                probe_interp.set_input(doc)
                slow = probe_interp.eval_rule(QUERY)
            except (RuntimeError, ValueError, TypeError):
                slow = _ERROR
            if fast != slow:
                # Only where and what kind: the input itself may carry personal data.
                log.warning("RVM and interpreter disagree on conformance input %d of %d (%s; %s vs %s); "
                            "using the interpreter", index, len(corpus),
                            "as shipped" if index < len(inputs) else "malformed variant",
                            _kind(fast), _kind(slow))
                return False
        return True

    def _compile_program(self) -> Any:
        import regorus

        return regorus.Program.compile_from_modules(self._data_json, self._modules, [QUERY])

    def _compile(self) -> Any:
        import regorus

        if self._program is not None:
            vm = regorus.Rvm()
            program, _ = regorus.Program.deserialize_binary(self._program)  # (program, is_partial)
            vm.load_program(program)
            vm.set_data_json(self._data_json)
            return vm
        engine = regorus.Engine()
        try:
            for path, source in self._modules:
                engine.add_policy(path, source)
            engine.add_data(self._data)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"policy does not compile: {_rust_message(exc)}") from None
        return engine

    def _engine(self) -> Any:
        cache = _thread_cache()
        engine = cache.get(self._key)
        if engine is None:
            for stale in [k for k in cache if k not in _LIVE]:
                del cache[stale]  # dropped on the thread that made it
            engine = cache[self._key] = self._compile()
        return engine

    def prepare(self) -> None:
        """Compile for the calling thread now, so no request pays for it inside its budget."""
        self._engine()

    def evaluate(self, input_doc: Mapping[str, Any]) -> dict[str, Any]:
        engine = self._engine()
        try:
            if self._program is not None:
                engine.set_input_json(orjson.dumps(input_doc).decode())
                answer: dict[str, Any] = orjson.loads(engine.execute())  # checked by check_result
                return answer
            engine.set_input(input_doc)
            result: dict[str, Any] = engine.eval_rule(QUERY)
            return result
        except (RuntimeError, ValueError, TypeError) as exc:
            raise EngineError(_rust_message(exc)) from None


_ERROR = object()


def _defined(value: Any) -> Any:
    """regorus' RVM returns the text "<undefined>" where the interpreter returns None."""
    return None if value == "<undefined>" else value


def _kind(outcome: Any) -> str:
    return "error" if outcome is _ERROR else "undefined" if outcome is None else "a value"


class RegopyEngine:
    kind = "regopy"

    def __init__(self, pack: PolicyPack, *, revision: str | None = None,
                 extra_data: dict[str, Any] | None = None) -> None:
        import regopy

        self._regopy = regopy
        self.revision = revision
        self.digest = pack.digest
        self._modules = sorted(pack.policy_modules.items())
        self._data = json.dumps(_merge_data(pack, extra_data))
        self._local = threading.local()
        try:  # rego-cpp compiles lazily: a probe query surfaces compile errors at load time
            self.evaluate(_PROBE_INPUT)
        except EngineError as exc:
            if "undefined" not in str(exc):
                raise

    def prepare(self) -> None:
        self._interpreter()

    def _interpreter(self) -> Any:
        interp = getattr(self._local, "interp", None)
        if interp is None:
            interp = self._regopy.Interpreter()
            for path, source in self._modules:
                interp.add_module(path, source)
            interp.add_data_json(self._data)
            self._local.interp = interp
        return interp

    def evaluate(self, input_doc: Mapping[str, Any]) -> dict[str, Any]:
        interp = self._interpreter()
        try:
            interp.set_input_term(orjson.dumps(input_doc).decode())
            output = interp.query(QUERY)
        except Exception as exc:  # regopy raises its own RegoError and RuntimeError
            raise EngineError(f"regopy: {type(exc).__name__}: {exc}") from None
        if not output.ok():
            raise EngineError(f"regopy: {str(output)[:300]}")
        text = str(output)
        if text == "undefined":
            raise EngineError("regopy: undefined decision")
        try:
            answer: dict[str, Any] = json.loads(text)["expressions"][0]  # checked by check_result
            return answer
        except (ValueError, KeyError, IndexError, TypeError):
            raise EngineError("regopy: unreadable result") from None


class OpaEngine:
    """A remote OPA (``ZTCP_OPA_URL``) through its REST API, with opa-python-client.

    Decisions are one ``POST /v1/data/<root>/authz/decision`` each, with no retries (a slow or
    failing OPA is a deny within the budget, not a retry storm). By default OPA pulls our signed
    bundle itself (``/v1/bundles/ztcp``) and the root is ``ztcp``. With ``push=True`` (an OPA that
    does not poll bundles) the engine uploads the pack on creation: its data under
    ``data.<root>`` and its modules, rewritten from ``ztcp`` to ``<root>``, where ``<root>`` is
    ``ztcp_<digest prefix>``. Pushing under a root of its own is what makes a reload atomic: OPA has
    no transaction over several modules, so the new revision is uploaded beside the old one and
    decisions switch to it in one step (this engine replacing the previous one); older pushed
    roots are then deleted. Operational data (``data.bureau``) is shared, not versioned.
    """

    kind = "opa"
    PUSH_PREFIX = "ztcp_"
    ADMIN_TIMEOUT_S = 10.0  # uploads and health checks: OPA compiles on upload, far beyond a decision budget

    def __init__(self, url: str, *, timeout_s: float = 0.05, revision: str | None = None,
                 client: OpaClient | None = None, pack: PolicyPack | None = None, push: bool = False,
                 extra_data: dict[str, Any] | None = None) -> None:
        self.revision = revision
        self.digest = pack.digest if pack is not None and push else None
        self.url = url.rstrip("/")
        self._client = client or _opa_client(url, timeout_s)
        self._admin = client or _opa_client(url, self.ADMIN_TIMEOUT_S)
        self.root = "ztcp"
        if push:
            if pack is None:
                raise ConfigurationError("pushing to OPA needs the policy pack")
            self.root = self.PUSH_PREFIX + pack.digest.removeprefix("sha256:")[:16]
            self._push(pack, extra_data)
        self._package = self._package_of(self.root)

    def healthy(self) -> bool:
        """OPA's ``GET /health``: up, and (for a bundle-pulling OPA) its bundles activated."""
        return bool(self._admin.check_health())

    def evaluate(self, input_doc: Mapping[str, Any]) -> dict[str, Any]:
        try:
            body = self._client.query_rule(input_doc, self._package, "decision")
        except requests.Timeout:
            raise EngineTimeout("OPA did not answer in time") from None
        except requests.HTTPError as exc:
            raise EngineError(f"OPA answered HTTP {exc.response.status_code if exc.response is not None else '?'}") \
                from None
        except (requests.RequestException, ValueError) as exc:  # ValueError: a body that is not JSON
            raise EngineError(f"OPA unreachable: {type(exc).__name__}") from None
        if not isinstance(body, dict) or "result" not in body:
            raise NoPolicy(f"OPA has no decision at data.{self._package}.decision (bundle not loaded?)")
        result: dict[str, Any] = body["result"]  # checked by check_result
        return result

    # -- push mode ----------------------------------------------------------------------------

    def _push(self, pack: PolicyPack, extra_data: dict[str, Any] | None) -> None:
        data = _merge_data(pack, extra_data)
        try:
            for key, value in sorted(data.items()):
                if key != "ztcp" and isinstance(value, dict):
                    self._admin.update_or_create_data(value, key)  # shared: data.bureau
            self._admin.update_or_create_data(data.get("ztcp", {}), self.root)
            self._push_modules(pack)
            # One decision before traffic: OPA prepares a query on its first evaluation, which would
            # otherwise be charged to (and time out) the first real request; and a root that gives
            # no decision fails the load, not that request.
            answer = self._admin.query_rule(_PROBE_INPUT, self._package_of(self.root), "decision")
        except (requests.RequestException, RegoParseError, ValueError) as exc:
            raise EngineError(f"pushing the policy to OPA failed: {type(exc).__name__}: {str(exc)[:200]}") \
                from None
        if "result" not in answer:
            raise EngineError(f"the policy pushed to OPA gives no decision at data.{self.root}.authz.decision")
        if self._delete_other_roots():
            # Deleting modules makes OPA recompile, which drops the query it just prepared: warm again.
            try:
                self._admin.query_rule(_PROBE_INPUT, self._package_of(self.root), "decision")
            except (requests.RequestException, ValueError) as exc:
                log.warning("OPA did not answer the warm-up decision after the switch: %s", type(exc).__name__)

    @staticmethod
    def _package_of(root: str) -> str:
        return root + ".authz"

    def _push_modules(self, pack: PolicyPack) -> None:
        """OPA compiles each uploaded module against those it already has, so a module calling a
        function of one not yet uploaded is refused: upload in passes until none is left, and give
        up (with OPA's last refusal) when a pass uploads nothing."""
        pending = sorted(pack.policy_modules.items())
        while pending:
            refused: list[tuple[str, str]] = []
            last: RegoParseError | None = None
            for path, source in pending:
                try:
                    # rego_compat=False: the client would otherwise retry a refused module as Rego v0.
                    self._admin.update_policy_from_string(_reroot(source, self.root), f"{self.root}/{path}",
                                                           rego_compat=False)
                except RegoParseError as exc:
                    refused.append((path, source))
                    last = exc
            if len(refused) == len(pending) and last is not None:
                raise last
            pending = refused

    def _delete_other_roots(self) -> bool:
        """Drop earlier pushed revisions; a failure only leaves them behind (they are never queried).
        True when something was deleted.

        OPA refuses to delete a module that others still call, so deletion goes in passes too."""
        deleted = False
        try:
            pending = sorted(pid for pid in self._admin.get_policies_list()
                             if pid.startswith(self.PUSH_PREFIX) and not pid.startswith(self.root + "/"))
            stale = sorted({pid.split("/", 1)[0] for pid in pending})
            while pending:
                kept = []
                for pid in pending:
                    try:
                        self._admin.delete_policy(pid)
                        deleted = True
                    except DeletePolicyError:
                        kept.append(pid)
                if len(kept) == len(pending):
                    raise DeletePolicyError("delete_refused", f"OPA keeps {len(kept)} module(s)")
                pending = kept
            for root in stale:
                self._admin.delete_data(root)
        except (requests.RequestException, DeletePolicyError, DeleteDataError, ValueError) as exc:
            log.warning("could not delete earlier policy revisions from OPA: %s", type(exc).__name__)
        return deleted


def _opa_client(url: str, timeout_s: float) -> OpaClient:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"ZTCP_OPA_URL must be http(s)://host[:port], not {url!r}")
    if parts.path.strip("/"):
        raise ConfigurationError("ZTCP_OPA_URL cannot carry a path: OPA's API is served at its root")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return OpaClient(host=parts.hostname, port=port, ssl=parts.scheme == "https", retries=0, timeout=timeout_s)


_ZTCP_REF = re.compile(r"\bdata\.ztcp\b")
_ZTCP_PACKAGE = re.compile(r"^(\s*package\s+)ztcp\b", re.MULTILINE)


def _reroot(source: str, root: str) -> str:
    """The module with its ``ztcp`` package root (``package ztcp.x``, ``data.ztcp.…``) moved to ``root``."""
    return _ZTCP_REF.sub("data." + root, _ZTCP_PACKAGE.sub(r"\g<1>" + root, source))


def conformance_inputs(pack: PolicyPack) -> list[dict[str, Any]]:
    """Inputs the engines must agree on: the probe plus the pack's ``conformance/*.json`` (lists)."""
    inputs: list[dict[str, Any]] = [_PROBE_INPUT]
    for name, raw in sorted(pack.files.items()):
        if name.startswith("conformance/") and name.endswith(".json"):
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise EngineError(f"{name}: conformance inputs are not valid JSON") from None
            inputs.extend(d for d in (doc if isinstance(doc, list) else [doc]) if isinstance(d, dict))
    return inputs


def create_engine(pack: PolicyPack, kind: str = "regorus", *, revision: str | None = None,
                  extra_data: dict[str, Any] | None = None, opa_url: str | None = None,
                  opa_push: bool = False) -> Engine:
    """``regorus`` (RVM when compilable), ``regorus-interpreter``, ``regopy`` or ``opa``
    (``opa_push``: upload the pack to that OPA instead of letting it pull the bundle)."""
    if kind == "regorus":
        return RegorusEngine(pack, revision=revision, extra_data=extra_data)
    if kind == "regorus-interpreter":
        return RegorusEngine(pack, revision=revision, extra_data=extra_data, mode="interpreter")
    if kind == "regopy":
        return RegopyEngine(pack, revision=revision, extra_data=extra_data)
    if kind == "opa":
        if not opa_url:
            raise ConfigurationError("engine 'opa' needs ZTCP_OPA_URL")
        return OpaEngine(opa_url, revision=revision, pack=pack, push=opa_push, extra_data=extra_data)
    raise ConfigurationError(f"unknown engine {kind!r}; one of {', '.join(ENGINE_KINDS)}")


def check_result(result: Any) -> dict[str, Any]:
    """The decision object must have the contract's shape; anything else is an engine error."""
    if not isinstance(result, dict):
        raise EngineError("policy returned no decision object")
    if result.get("effect") not in ("permit", "deny", "step_up"):
        raise EngineError("policy decision has no valid effect")
    for key in ("reasons", "obligations", "permitted_fields"):
        if key in result and not isinstance(result[key], list):
            raise EngineError(f"policy decision field {key} is not a list")
    risk = result.get("risk", {})
    if not isinstance(risk, dict) or not isinstance(risk.get("score", 0), int | float):
        raise EngineError("policy decision risk is malformed")
    return result


def _evaluate(engine: Engine, input_doc: Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation where any failure, Rust panics included, becomes an :class:`EngineError`."""
    try:
        return engine.evaluate(input_doc)
    except (EngineError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - Rust panics surface as BaseException; fail closed
        raise EngineError(f"{type(exc).__name__}: {str(exc)[:200]}") from None


class GuardedEngine:
    """Holds the active engine (swapped atomically on reload) and enforces the evaluation budget."""

    def __init__(self, engine: Engine | None, timeout_ms: int = 50, workers: int = 4) -> None:
        self.timeout_s = timeout_ms / 1000.0
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ztcp-engine")
        self._engine: Engine | None = None
        self.swap(engine)

    def prepare(self, engine: Engine | None) -> None:
        """Run the engine's per-thread preparation on every worker before it takes traffic."""
        prepare = getattr(engine, "prepare", None)
        if prepare is not None:
            self._on_each_worker(prepare)

    def _on_each_worker(self, task: Any) -> None:
        barrier = threading.Barrier(self._workers)

        def run() -> None:
            task()
            barrier.wait(timeout=60)  # holds this worker so the next task lands on another one

        for future in [self._pool.submit(run) for _ in range(self._workers)]:
            future.result(timeout=120)

    @property
    def engine(self) -> Engine | None:
        return self._engine

    def swap(self, engine: Engine | None) -> None:
        self.prepare(engine)
        # A single reference assignment: requests that already took the old engine finish on it.
        self._engine = engine

    def evaluate(self, input_doc: Mapping[str, Any], engine: Engine | None = None) -> dict[str, Any]:
        engine = engine or self._engine
        if engine is None:
            raise NoPolicy("no policy loaded")
        if getattr(engine, "bounded", False):
            return self._evaluate_inline(engine, input_doc)
        future = self._pool.submit(_evaluate, engine, input_doc)
        try:
            result = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise EngineTimeout(f"policy evaluation exceeded {int(self.timeout_s * 1000)} ms") from None
        return check_result(result)

    def _evaluate_inline(self, engine: Engine, input_doc: Mapping[str, Any]) -> dict[str, Any]:
        """In-process Rego is bounded computation (no I/O, no recursion), so it runs on the caller's
        thread — a hop to a worker costs more than a whole RVM evaluation — and its budget is
        enforced on completion: an evaluation over budget is still a deny."""
        prepare = getattr(engine, "prepare", None)
        if prepare is not None:
            prepare()  # compiling for a new thread is not charged to the request's budget
        started = time.perf_counter()
        result = _evaluate(engine, input_doc)
        if time.perf_counter() - started > self.timeout_s:
            raise EngineTimeout(f"policy evaluation exceeded {int(self.timeout_s * 1000)} ms")
        return check_result(result)

    def close(self) -> None:
        # Compiled engines must be dropped on the thread that made them (see _thread_cache).
        try:
            self._on_each_worker(release_thread_engines)
        except Exception:  # a hung worker: leave its engines, shut down the rest
            log.warning("engine worker did not release its engines at close")
        self._pool.shutdown(wait=False, cancel_futures=True)


_PROBE_INPUT: dict[str, Any] = {
    "subject": {"id": "probe", "type": "employee", "roles": [], "org_unit": None,
                "auth": {"method": "none", "mfa": False, "auth_time": 0, "token_age_s": 0}},
    "device": {"id": "probe", "managed": False, "compliant": False, "posture": {}},
    "context": {"ip": None, "network_zone": "internet", "channel": "api", "time": "1970-01-01T00:00:00Z",
                "geo": None},
    "resource": {"type": "probe", "dataset": "probe", "record_id": None, "citizen_ref": None,
                 "fields": [], "classification": "personal"},
    "action": "read",
    "purpose": {"code": None, "case_id": None, "legal_basis": None, "consent_id": None,
                "justification": None, "break_glass": False},
    "signals": {},
}
