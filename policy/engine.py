"""The embedded Rego engine (regorus) as the lifecycle tools use it: load a pack, read the AST,
turn engine errors into ``file:line:col: message``.

The PDP has its own engine wrapper; this one serves validation, ``policy test`` and coverage, and
must not depend on ``pdp`` (dependency direction is ``pdp → policy``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import regorus

from policy.pack import PolicyPack

_LOCATION = re.compile(r"-->\s*(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+)\s*$", re.MULTILINE)
_ERROR_LINE = re.compile(r"^error:\s*(?P<msg>.*)$", re.MULTILINE)


@dataclass(frozen=True, order=True)
class Problem:
    """One problem found in a pack, printed the way editors and CI annotate: ``file:line:col: message``."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "message": self.message}


def engine_message(exc: BaseException) -> str:
    """The engine's message without the Rust backtrace regorus appends."""
    text = str(exc)
    return text.split("Stack backtrace:", 1)[0].strip()


def char_column(line_text: str, engine_col: int) -> int:
    """Convert regorus' column (UTF-8 bytes, a tab counted as 4) to the 1-based character column
    editors and CI annotations use."""
    width = 0
    for index, ch in enumerate(line_text):
        if width >= engine_col - 1:
            return index + 1
        width += 4 if ch == "\t" else len(ch.encode("utf-8"))
    return len(line_text) + 1 if width < engine_col - 1 else len(line_text) + 1


def problem_from_engine_error(
    exc: BaseException, default_file: str, sources: Mapping[str, str] | None = None
) -> Problem:
    """Map a regorus error (``--> file:line:col`` … ``error: message``) to a Problem.

    With ``sources`` (path → module text), the column is converted to characters.
    """
    text = engine_message(exc)
    loc = _LOCATION.search(text)
    err = _ERROR_LINE.search(text)
    message = err.group("msg").strip() if err else (text.splitlines()[0] if text else "engine error")
    if not message:
        message = "engine error"
    if loc:
        file, line, col = loc.group("file").strip(), int(loc.group("line")), int(loc.group("col"))
        if sources is not None and file in sources:
            lines = sources[file].splitlines()
            if 1 <= line <= len(lines):
                col = char_column(lines[line - 1], col)
        return Problem(file, line, col, message)
    return Problem(default_file, 1, 1, message)


@dataclass(frozen=True)
class RuleInfo:
    name: str
    line: int
    kind: str  # Compr | Set | Func


@dataclass(frozen=True)
class ModuleInfo:
    file: str
    package: str  # "data.ztcp.authz"
    rules: tuple[RuleInfo, ...]


def _ref_parts(node: dict[str, Any]) -> list[str]:
    """Flatten a Var / RefDot / RefBrack reference into its name parts."""
    if "Var" in node:
        return [node["Var"]["value"]]
    if "RefDot" in node:
        ref = node["RefDot"]
        field = ref["field"]
        name = field[1] if isinstance(field, list) and len(field) > 1 else str(field)
        return [*_ref_parts(ref["refr"]), str(name)]
    if "RefBrack" in node:
        ref = node["RefBrack"]
        index = ref.get("index", {})
        literal = index.get("String", {}).get("value") if isinstance(index, dict) else None
        return [*_ref_parts(ref["refr"]), str(literal) if literal is not None else "[…]"]
    return ["?"]


def module_infos(engine: Any) -> list[ModuleInfo]:
    """Package and top-level rules of every module loaded in ``engine`` (from regorus' AST)."""
    infos: list[ModuleInfo] = []
    for entry in json.loads(engine.get_ast_as_json()):
        ast = entry["ast"]
        package = "data." + ".".join(_ref_parts(ast["package"]["refr"]))
        rules: list[RuleInfo] = []
        for rule in ast.get("rules", []):
            spec = rule.get("Spec")
            if not spec:
                continue
            (kind, head), *_ = spec["head"].items()
            parts = _ref_parts(head["refr"])
            rules.append(RuleInfo(name=parts[0], line=head["span"]["line"], kind=kind))
        infos.append(ModuleInfo(file=entry["source"]["file"], package=package, rules=tuple(rules)))
    return infos


def new_engine(pack: PolicyPack, *, coverage: bool = False, include_tests: bool = True) -> Any:
    """A regorus engine holding the pack's modules and data (raises on the first parse error)."""
    engine = regorus.Engine()
    engine.set_gather_prints(True)  # `print` in policies/tests must not write to our stdout
    modules = pack.modules if include_tests else pack.policy_modules
    for path in sorted(modules):
        engine.add_policy(path, modules[path])
    if pack.data:
        engine.add_data(pack.data)
    if coverage:
        engine.set_enable_coverage(True)
    return engine
