"""``ztcp policy validate``: parse and compile every module, check data against the pack's schemas,
and refuse constructs that decide differently under OPA than under regorus (``policy.portability``).

Every problem is a :class:`Problem` (``file:line:col: message``); nothing stops at the first one
except compilation, which regorus reports one error at a time (see :func:`_compile_problems`).

Schema convention (documented in the pack README and ``--help``): each ``schema/<name>.schema.json``
in the pack is a JSON Schema for the data document at ``data.ztcp.<name>`` — so
``schema/config.schema.json`` validates ``data.ztcp.config``. A schema may name another data path
explicitly with a top-level ``"x-ztcp-data-path": "bureau"`` (dotted, relative to ``data``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import regorus
import yaml

from policy.engine import Problem, module_infos, problem_from_engine_error
from policy.errors import PackError
from policy.locate import locate
from policy.pack import PolicyPack, merge_data, read_pack_files
from policy.portability import portability_problems

SCHEMA_DIR = "schema"
SCHEMA_SUFFIX = ".schema.json"
SCHEMA_PATH_KEY = "x-ztcp-data-path"
DEFAULT_DATA_NAMESPACE = ("ztcp",)
_DATA_NAMES = ("data.json", "data.yaml", "data.yml")
_UNSUPPORTED = "not supported by the compiler"


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the Rust panic message regorus writes straight to fd 2 (we report it our way)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _is_data_file(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in _DATA_NAMES


def _data_problems(files: Mapping[str, bytes]) -> list[Problem]:
    problems: list[Problem] = []
    for name in sorted(files):
        if not (_is_data_file(name) or name.endswith(".json")):
            continue
        raw = files[name]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem(name, 1, 1, f"not UTF-8 (byte {exc.start})"))
            continue
        if name.endswith(".json"):
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(Problem(name, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}"))
        else:
            try:
                yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                problems.append(Problem(name, line, col, f"invalid YAML: {getattr(exc, 'problem', exc)}"))
    return problems


def _parse_problems(modules: Mapping[str, str]) -> tuple[list[Problem], dict[str, str]]:
    """Parse each module on its own; return problems and the modules that parsed."""
    problems: list[Problem] = []
    good: dict[str, str] = {}
    for path in sorted(modules):
        engine = regorus.Engine()
        try:
            engine.add_policy(path, modules[path])
        except Exception as exc:  # regorus raises RuntimeError/ValueError with a located message
            problems.append(problem_from_engine_error(exc, path, modules))
            continue
        good[path] = modules[path]
    return problems, good


def _entry_points(modules: Mapping[str, str]) -> list[str]:
    """Every non-function rule: regorus only resolves calls in rules reachable from an entry point."""
    engine = regorus.Engine()
    for path in sorted(modules):
        engine.add_policy(path, modules[path])
    points = {
        f"{info.package}.{rule.name}" for info in module_infos(engine) for rule in info.rules if rule.kind != "Func"
    }
    return sorted(points)


class _CompilerLimit(Exception):
    """The RVM compiler cannot handle this input (a construct it lacks, or an internal limit)."""


def _compile(data_json: str, modules: Mapping[str, str], entries: list[str], sources: Mapping[str, str]) -> None:
    """Compile; raise a Problem-carrying RuntimeError for policy errors, _CompilerLimit otherwise."""
    try:
        with _quiet_stderr():
            regorus.Program.compile_from_modules(data_json, sorted(modules.items()), entries)
    except BaseException as exc:  # noqa: BLE001 - pyo3's PanicException derives from BaseException
        if type(exc).__name__ == "PanicException":
            # Internal limits (e.g. "Register overflow" on a very large rule) surface as Rust
            # panics: the checker's limit, not a policy problem.
            raise _CompilerLimit(str(exc)[:200]) from None
        if not isinstance(exc, Exception):
            raise
        problem = problem_from_engine_error(exc, next(iter(sorted(modules))), sources)
        if _UNSUPPORTED in problem.message:
            raise _CompilerLimit(problem.message) from None
        raise _Located(problem) from None


class _Located(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def _compile_problems(modules: dict[str, str], data: dict[str, Any]) -> list[Problem]:
    """Compile the policy modules together (unknown functions, unsafe variables, …).

    regorus stops at the first error, so after each error the faulty module is set aside and the
    rest compiled again: one problem per broken file, every broken file reported. Test modules are
    only parsed here: the RVM compiler lacks `with`, which tests use everywhere, and they share
    helper modules, so a compile error in one would cascade; ``policy test`` reports their errors.
    Where the compiler reaches its own limits the modules are left to the evaluation check.
    """
    problems: list[Problem] = []
    data_json = json.dumps(data)
    remaining = {p: s for p, s in modules.items() if not p.endswith("_test.rego")}
    while remaining:
        entries = _entry_points(remaining)
        if not entries:
            break
        try:
            _compile(data_json, remaining, entries, modules)
            break
        except _CompilerLimit:
            # A policy module beyond the compiler: its dependents would report false "unknown
            # function" errors, so stop here and rely on evaluation.
            return problems
        except _Located as located:
            problems.append(located.problem)
            if located.problem.file not in remaining:
                return problems
            del remaining[located.problem.file]
    return problems


def _evaluation_problems(modules: dict[str, str], data: dict[str, Any]) -> list[Problem]:
    """Evaluate every non-test package once with an empty input: catches conflicting rules and
    type errors in constant rules that compilation does not see."""
    engine = regorus.Engine()
    engine.set_gather_prints(True)
    for path in sorted(modules):
        engine.add_policy(path, modules[path])
    if data:
        engine.add_data(data)
    engine.set_input({})
    problems: list[Problem] = []
    seen: set[str] = set()
    for info in module_infos(engine):
        if info.file.endswith("_test.rego") or info.package in seen:
            continue
        seen.add(info.package)
        try:
            engine.eval_query_as_json(info.package)  # JSON: sets of objects do not map to Python sets
        except Exception as exc:
            problems.append(problem_from_engine_error(exc, info.file, modules))
    return problems


def _data_at(data: dict[str, Any], parts: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = data
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def schema_data_path(name: str, schema: Mapping[str, Any]) -> tuple[str, ...]:
    """The data path a pack schema validates (see module docstring for the convention)."""
    explicit = schema.get(SCHEMA_PATH_KEY)
    if isinstance(explicit, str) and explicit.strip():
        return tuple(p for p in explicit.strip().removeprefix("data.").split(".") if p)
    stem = name.rsplit("/", 1)[-1].removesuffix(SCHEMA_SUFFIX)
    return (*DEFAULT_DATA_NAMESPACE, *[p for p in stem.split(".") if p])


def _locate_in_data_files(files: Mapping[str, bytes], full_path: tuple[str | int, ...]) -> tuple[str, int, int] | None:
    """The data file (and position) holding ``full_path``; the deepest match wins."""
    best: tuple[int, str, int, int] | None = None
    for name in sorted(files):
        if not _is_data_file(name):
            continue
        prefix = tuple(p for p in name.split("/")[:-1] if p)
        if tuple(full_path[: len(prefix)]) != prefix:
            continue
        rest = full_path[len(prefix) :]
        line, col, matched = locate(name, files[name].decode("utf-8"), rest)
        score = len(prefix) + matched
        if best is None or score > best[0]:
            best = (score, name, line, col)
    return None if best is None else best[1:]


def _schema_problems(files: Mapping[str, bytes], data: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name in sorted(files):
        if not (name.startswith(SCHEMA_DIR + "/") and name.endswith(SCHEMA_SUFFIX)):
            continue
        try:
            schema = json.loads(files[name])
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # already reported by _data_problems
        if not isinstance(schema, dict):
            problems.append(Problem(name, 1, 1, "a JSON Schema must be an object"))
            continue
        validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            validator_cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            line, col, _ = locate(name, files[name].decode("utf-8"), list(exc.absolute_path))
            problems.append(Problem(name, line, col, f"invalid JSON Schema: {exc.message}"))
            continue
        target = schema_data_path(name, schema)
        present, instance = _data_at(data, target)
        dotted = "data." + ".".join(target)
        if not present:
            problems.append(Problem(name, 1, 1, f"no data at {dotted} to validate against this schema"))
            continue
        validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
        for error in errors:
            rel = tuple(error.absolute_path)
            where = _locate_in_data_files(files, (*target, *rel))
            shown = dotted + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rel)
            message = f"{shown}: {error.message} (schema {name})"
            if where is None:
                problems.append(Problem(name, 1, 1, message))
            else:
                problems.append(Problem(where[0], where[1], where[2], message))
    return problems


def validate_files(files: Mapping[str, bytes]) -> list[Problem]:
    """Every problem in a pack given as relative path → bytes; empty list means valid."""
    problems = _data_problems(files)
    modules: dict[str, str] = {}
    for name in sorted(files):
        if name.endswith(".rego"):
            try:
                modules[name] = files[name].decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(Problem(name, 1, 1, f"not UTF-8 (byte {exc.start})"))
    if not any(not p.endswith("_test.rego") for p in modules):
        problems.append(Problem(".", 1, 1, "no policy modules (*.rego)"))
    parse_problems, parsed = _parse_problems(modules)
    problems += parse_problems
    if parsed and not parse_problems:
        problems += _portability(parsed)

    data: dict[str, Any] | None = None
    if not problems or all(p.file.endswith(".rego") for p in problems):
        try:
            data = merge_data(dict(files))
        except PackError as exc:
            m = re.match(r"^(?P<file>[^:\s]+?)(?::(?P<line>\d+))?: (?P<msg>.*)$", str(exc), re.DOTALL)
            if m:
                problems.append(Problem(m["file"], int(m["line"] or 1), 1, m["msg"]))
            else:
                problems.append(Problem(".", 1, 1, str(exc)))
    if data is not None:
        problems += _schema_problems(files, data)
        if parsed and not parse_problems:
            compile_problems = _compile_problems(parsed, data)
            problems += compile_problems
            if not compile_problems:
                problems += _evaluation_problems(parsed, data)
    return sorted(set(problems))


def _portability(modules: dict[str, str]) -> list[Problem]:
    """The pack promises OPA-compatible policy, so a construct OPA decides differently is a problem
    like any other (it blocks propose). If the check itself breaks, that is reported too: a pack
    is not passed unchecked."""
    try:
        return portability_problems(modules)
    except Exception as exc:  # noqa: BLE001 - an unforeseen AST shape must not pass the pack silently
        return [Problem(".", 1, 1, f"the OPA portability check could not run: {type(exc).__name__}: {exc}")]


def validate_pack(pack: PolicyPack) -> list[Problem]:
    return validate_files(pack.files)


def validate_dir(directory: Path | str) -> list[Problem]:
    return validate_files(read_pack_files(Path(directory)))
