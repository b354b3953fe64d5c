"""OPA v1 itself, in process: the reference the pack must decide identically under.

ztcp promises OPA-compatible policy (signed bundles a remote OPA pulls, ``ZTCP_OPA_URL``), so the
pack is checked against the real OPA engine, not only against regorus. OPA is the Go library
``github.com/open-policy-agent/opa/v1/rego``, as built into ``opa-golib-python-bindings`` (a Go
c-shared library behind a stdlib-only ctypes wrapper). Its wheel is tagged for Python ≥ 3.14 but
loads on 3.11, so it is not a pip dependency: ``scripts/install-opa-lib.sh`` fetches the pinned
wheel (SHA-256 checked) and unpacks it into ``<venv>/opa-golib``, where :func:`load_bindings`
looks (or ``ZTCP_OPA_LIB_DIR``).

Used by the conformance tests, the engine benchmark and the test OPA server; the PDP does not
evaluate with it (its engines are regorus in process, or a remote OPA over HTTP).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypedDict

from policy.pack import PolicyPack

LIB_DIR_ENV = "ZTCP_OPA_LIB_DIR"
LIB_DIR_NAME = "opa-golib"
DECISION = "ztcp.authz.decision"  # the PDP's query, as OPA's document path (no "data.")

_LOCK = threading.Lock()


class _Loaded(TypedDict, total=False):
    """The outcome of the one load attempt per process: the module, or why it failed."""

    module: ModuleType
    error: str


_LOADED: _Loaded = {}


class OpaUnavailable(RuntimeError):
    """The OPA library is not installed here or cannot load; the message says which and where."""


def lib_dirs() -> list[Path]:
    """Where the unpacked library may be, in order: ``ZTCP_OPA_LIB_DIR``, the running venv's
    ``opa-golib`` (where ``make test`` puts it), the project checkout's ``.venv/opa-golib`` (a
    worktree that runs another checkout's interpreter)."""
    dirs = []
    if os.environ.get(LIB_DIR_ENV):
        dirs.append(Path(os.environ[LIB_DIR_ENV]))
    dirs.append(Path(sys.prefix) / LIB_DIR_NAME)
    dirs.append(Path(__file__).resolve().parent.parent / ".venv" / LIB_DIR_NAME)
    return list(dict.fromkeys(d.resolve() for d in dirs))


def load_bindings() -> ModuleType:
    """The ``opa_bindings`` module with its Go library loaded; :class:`OpaUnavailable` if not."""
    with _LOCK:
        if "module" in _LOADED:
            return _LOADED["module"]
        if "error" in _LOADED:
            raise OpaUnavailable(_LOADED["error"])
        try:
            module = _import_bindings()
            module.OpaEngine().close()  # loads libopabridge.so: a missing or foreign .so fails here
        except OpaUnavailable as exc:
            _LOADED["error"] = str(exc)
            raise
        except (ImportError, OSError) as exc:
            _LOADED["error"] = f"OPA library does not load: {type(exc).__name__}: {exc}"
            raise OpaUnavailable(_LOADED["error"]) from None
        _LOADED["module"] = module
        return module


def _import_bindings() -> ModuleType:
    for directory in lib_dirs():
        if (directory / "opa_bindings" / "__init__.py").is_file():
            if str(directory) not in sys.path:
                sys.path.append(str(directory))
            return importlib.import_module("opa_bindings")
    try:  # installed some other way (a Python >= 3.14 environment can pip-install it)
        return importlib.import_module("opa_bindings")
    except ImportError:
        pass
    searched = ", ".join(str(d) for d in lib_dirs())
    raise OpaUnavailable(f"OPA library not installed (run scripts/install-opa-lib.sh; looked in {searched})")


def available() -> tuple[bool, str]:
    """(True, "") when the library loads, else (False, why) — for a visible pytest skip reason."""
    try:
        load_bindings()
    except OpaUnavailable as exc:
        return False, str(exc)
    return True, ""


@dataclass(frozen=True)
class Outcome:
    """One evaluation, comparable across engines: a value, ``undefined``, or an error (engines word
    their errors differently, so only the fact of an error is compared; ``detail`` keeps the text)."""

    kind: str  # value | undefined | error
    value: Any = None
    detail: str = ""

    def same_as(self, other: Outcome) -> bool:
        return self.kind == other.kind and self.value == other.value

    def __str__(self) -> str:
        if self.kind == "error":
            return f"error ({self.detail[:160]})"
        return repr(self.value) if self.kind == "value" else self.kind


class OpaLibrary:
    """A pack loaded into one in-process OPA engine.

    The binding prepares each distinct query once and reuses it (its prepared-query cache), so
    repeated :meth:`evaluate` calls cost one evaluation each. Evaluations on one engine are
    serialised by the binding's lock: use one instance per thread for parallel work.
    """

    def __init__(self, pack: PolicyPack, *, include_tests: bool = False, extra_data: Mapping[str, Any] | None = None):
        bindings = load_bindings()
        self._errors = (bindings.OpaError,)
        self._undefined = bindings.OpaUndefinedError
        self._engine = bindings.OpaEngine()
        self._engine.print_handler = lambda message, location: None  # `print` in tests is not our output
        modules = pack.modules if include_tests else pack.policy_modules
        for path in sorted(modules):
            self._engine.add_policy(path, modules[path])
        data = dict(pack.data)
        data.update(extra_data or {})  # operational data replaces the pack's sample, as in the PDP
        if data:
            self._engine.add_data(data)

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> OpaLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def evaluate(self, input_doc: Any, path: str = DECISION) -> Any:
        """The document at ``data.<path>``; raises the binding's ``OpaError`` (undefined included)."""
        return self._engine.eval_document(path, input_doc)

    def outcome(self, input_doc: Any, path: str = DECISION) -> Outcome:
        try:
            return Outcome("value", self._engine.eval_document(path, input_doc))
        except self._undefined:
            return Outcome("undefined")
        except self._errors as exc:
            return Outcome("error", detail=str(exc))

    def run_tests(self, tests: Iterable[str]) -> dict[str, Outcome]:
        """``opa test`` semantics for the given ``package.test_name`` ids: pass means ``true``."""
        return {test: self.outcome(None, test) for test in tests}  # no input, as `opa test`
