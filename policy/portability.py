"""Constructs that decide differently under OPA v1 than under regorus: found statically, so an
officer's edit cannot bring them back (``ztcp policy validate``; each is a :class:`Problem` at
``file:line:col``). The pack's README ("Writing Rego for this pack") gives the portable form of each;
``tests/policy/test_opa_conformance.py`` shows each one splitting the engines on real inputs.

1. ``not`` over an expression with an operand that may be undefined — ``not input.x in S``,
   ``not f(input.x)``, ``not input.x > 1``, ``not data.cfg[input.x]``, ``not 1 in some_rule``:
   OPA evaluates the operands before the negation and fails it when one is undefined; regorus
   holds it (open-policy-agent/opa#1877). ``not`` over a rule name, a plain reference or ``==``
   between plain references behaves alike in both and is not reported.
2. A test's ``with data.a.b.c as <object>`` while a policy module reads a parent (``data.a`` or
   ``data.a.b``) as a whole: OPA merges the override into the parent it reads, regorus replaces it.
3. ``time.parse_rfc3339_ns`` over a value that no strict RFC 3339 ``regex.match`` in the same body
   has checked: OPA raises on a lower-case ``t``, regorus accepts it (and on leap seconds, 24:00
   offsets, impossible dates they differ too). "Strict" is checked by trying the pattern on
   such strings.

The analysis reads regorus' AST. Operands are "maybe undefined" when they reach into ``input``,
into ``data`` documents, into a rule that has no ``default`` and is not a partial set/object or
an unconditional constant, into a field of a local value, or call a user function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import regorus

from policy.engine import Problem

GUIDE = "policy/rego/README.md, portability"
PARSE_TIME = "time.parse_rfc3339_ns"

# A pattern is strict when it refuses every one of these (each one splits OPA and regorus, or goes
# outside the int64-nanosecond range) and accepts the plain forms below.
NOT_STRICT_RFC3339 = (
    "2026-11-23t10:00:00+08:00", "2026-11-23T10:00:00z", "2026-11-23T23:59:60Z", "2026-11-23T24:00:00Z",
    "2026-11-23T10:00:00+24:00", "2026-11-23T10:00:00+08:60", "2026-02-30T10:00:00Z", "2023-02-29T10:00:00Z",
    "2026-13-01T10:00:00Z", "2026-11-32T10:00:00Z", "2026-11-23 10:00:00Z", "2026-11-23T10:00:00.Z",
    "2026-11-23T10:00:00.1234567891Z", "0000-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "2026-11-23T10:00:00",
    "20\uff12\uff16-11-23T10:00:00Z", "2026-11-23T10:00:0\u0665Z",  # non-ASCII digits: `\d` in regorus
)
STRICT_RFC3339_OK = ("2026-11-23T10:00:00+08:00", "2026-11-23T10:00:00Z", "2024-02-29T00:00:00Z",
                     "2026-11-23T10:00:00.123456789-05:30")

_LITERALS = ("String", "RawString", "Number", "Bool", "Null")
_COMPREHENSIONS = ("ArrayCompr", "SetCompr", "ObjectCompr")


def is_strict_rfc3339_pattern(pattern: str) -> bool:
    try:
        compiled = re.compile(pattern)
    except re.error:
        return False
    return (all(compiled.search(s) is None for s in NOT_STRICT_RFC3339)
            and all(compiled.search(s) is not None for s in STRICT_RFC3339_OK))


@dataclass
class _Rule:
    has_default: bool = False
    partial: bool = False  # a partial set or object: empty, not undefined, when nothing matches
    is_function: bool = False
    conditional: bool = False  # some definition has a body or a computed value
    static: bool = False  # some definition is an unconditional literal or comprehension
    constant: Any = None  # the value term of an unconditional `x := <literal>`

    @property
    def always_defined(self) -> bool:
        return self.has_default or self.partial or (self.static and not self.conditional)


@dataclass
class _Module:
    file: str
    package: tuple[str, ...]
    imports: dict[str, tuple[str, ...]]
    ast: dict[str, Any]
    is_test: bool = field(default=False)


def _span(node: dict[str, Any]) -> tuple[int, int]:
    span = node.get("span") or {}
    return span.get("line", 1), span.get("col", 1)


def _kind(term: Any) -> tuple[str, Any]:
    if isinstance(term, dict) and len(term) == 1:
        (kind, body), = term.items()
        return kind, body
    return "", term


def _field_name(raw: Any) -> str:
    return str(raw[1]) if isinstance(raw, list) and len(raw) > 1 else str(raw)


def _flatten(term: Any) -> tuple[Any, list[tuple[str, Any]]]:
    """A reference as (base term, [("field", name) | ("index", term)])."""
    kind, body = _kind(term)
    if kind == "RefDot":
        base, parts = _flatten(body["refr"])
        return base, [*parts, ("field", _field_name(body["field"]))]
    if kind == "RefBrack":
        base, parts = _flatten(body["refr"])
        index_kind, index = _kind(body["index"])
        if index_kind in ("String", "RawString"):
            return base, [*parts, ("field", index["value"])]
        return base, [*parts, ("index", body["index"])]
    return term, []


def _subterms(node: Any) -> Iterator[Any]:
    """Every term directly inside a composite node (for kinds not handled one by one)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("span", "eidx", "sidx", "qidx"):
                continue
            if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TERM_KINDS:
                yield value
            elif isinstance(value, dict | list):
                yield from _subterms(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in _TERM_KINDS:
                yield item
            else:
                yield from _subterms(item)


_TERM_KINDS = {
    *_LITERALS, *_COMPREHENSIONS, "Var", "RefDot", "RefBrack", "Array", "Set", "Object", "Call", "UnaryExpr",
    "BinExpr", "ArithExpr", "BoolExpr", "Membership", "AssignExpr",
}


class _Analysis:
    def __init__(self, modules: Mapping[str, str]) -> None:
        engine = regorus.Engine()
        for path in sorted(modules):
            engine.add_policy(path, modules[path])
        self.sources = dict(modules)
        self.modules: list[_Module] = []
        self.rules: dict[tuple[str, ...], _Rule] = {}
        for entry in json.loads(engine.get_ast_as_json()):
            file, ast = entry["source"]["file"], entry["ast"]
            base, parts = _flatten(ast["package"]["refr"])
            package = ("data", _kind(base)[1]["value"], *[p for _, p in parts])
            self.modules.append(_Module(file, package, self._imports(file, ast), ast, file.endswith("_test.rego")))
        for module in self.modules:
            self._index_rules(module)
        self.problems: list[Problem] = []

    # -- indexing ----------------------------------------------------------------------------

    def _imports(self, file: str, ast: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        raw = self.sources[file].encode()
        imports: dict[str, tuple[str, ...]] = {}
        for imp in ast.get("imports", []):
            base, parts = _flatten(imp["refr"])
            path = (_kind(base)[1].get("value", "?"), *[p for _, p in parts])
            if path[0] != "data":
                continue
            alias = imp.get("as")
            name = raw[alias["start"]:alias["end"]].decode() if isinstance(alias, dict) else path[-1]
            imports[name] = tuple(path)
        return imports

    def _index_rules(self, module: _Module) -> None:
        for rule in module.ast.get("rules", []):
            if "Default" in rule:
                base, parts = _flatten(rule["Default"]["refr"])
                path = (*module.package, _kind(base)[1]["value"], *[p for k, p in parts if k == "field"])
                self.rules.setdefault(path, _Rule()).has_default = True
                continue
            spec = rule.get("Spec")
            if not spec:
                continue
            (head_kind, head), = spec["head"].items()
            base, parts = _flatten(head["refr"])
            path = (*module.package, _kind(base)[1]["value"], *[p for k, p in parts if k == "field"])
            info = self.rules.setdefault(path, _Rule())
            value = (head.get("assign") or {}).get("value")
            if head_kind == "Func":
                info.is_function = True
            elif head_kind == "Set" or any(k == "index" for k, _ in parts):
                info.partial = True
            elif not spec["bodies"] and value is not None and self._static(value):
                info.static = True
                info.constant = value
            else:
                info.conditional = True

    def _static(self, term: Any) -> bool:
        """A literal or a comprehension: always defined, whatever the input."""
        kind, body = _kind(term)
        if kind in _LITERALS or kind in _COMPREHENSIONS:
            return True
        if kind in ("Array", "Set", "Object"):
            return all(self._static(t) for t in _subterms(body))
        return False

    # -- resolution --------------------------------------------------------------------------

    def _resolve(self, module: _Module, term: Any, local: set[str]) -> tuple[str, ...] | None:
        """The data path a reference starts from (None for input, locals and others)."""
        base, parts = _flatten(term)
        kind, body = _kind(base)
        if kind != "Var" or body["value"] in local:
            return None
        name = body["value"]
        fields = []
        for part_kind, part in parts:
            if part_kind != "field":
                break
            fields.append(part)
        if name == "data":
            return ("data", *fields)
        if name in module.imports:
            return (*module.imports[name], *fields)
        if (*module.package, name) in self.rules:
            return (*module.package, name, *fields)
        return None

    def _rule_at(self, path: tuple[str, ...]) -> tuple[tuple[str, ...], _Rule] | None:
        for end in range(len(path), 1, -1):
            if path[:end] in self.rules:
                return path[:end], self.rules[path[:end]]
        return None

    # -- "maybe undefined" ---------------------------------------------------------------------

    def maybe_undefined(self, module: _Module, term: Any, local: set[str], known: frozenset[str] = frozenset()) -> bool:
        """``known``: references an earlier positive statement of the body evaluated (so defined)."""
        kind, body = _kind(term)
        if kind in _LITERALS or kind in _COMPREHENSIONS:
            return False
        if kind in ("Var", "RefDot", "RefBrack"):
            return _text(term) not in known and self._ref_maybe_undefined(module, term, local, known)
        if kind == "Call":
            if self._user_function(module, body["fcn"], local):
                return True  # a function's result is undefined when no definition matches
            return any(self.maybe_undefined(module, arg, local, known) for arg in body.get("params", []))
        return any(self.maybe_undefined(module, t, local, known) for t in _subterms(body))

    def _ref_maybe_undefined(self, module: _Module, term: Any, local: set[str], known: frozenset[str]) -> bool:
        base, parts = _flatten(term)
        if any(k == "index" and self.maybe_undefined(module, t, local, known) for k, t in parts):
            return True
        name = _kind(base)[1].get("value") if _kind(base)[0] == "Var" else None
        if name is None:
            return self.maybe_undefined(module, base, local, known) or bool(parts)
        if name in local:
            return bool(parts)  # a field of a local value may be missing
        if name == "input":
            return True
        path = self._resolve(module, term, local)
        if path is None:
            return bool(parts)
        if path == ("data",):
            return False
        found = self._rule_at(path)
        if found is None:
            return True  # a base document (data.ztcp.config…): it may be missing
        rule_path, info = found
        # Defined only as the rule itself, when the rule always is: a field of its value, or a
        # computed key into it, may be missing.
        return len(path) > len(rule_path) or not info.always_defined or any(k == "index" for k, _ in parts)

    def _user_function(self, module: _Module, fcn: Any, local: set[str]) -> bool:
        path = self._resolve(module, fcn, local)
        return path is not None and path in self.rules and self.rules[path].is_function

    # -- walking -------------------------------------------------------------------------------

    def run(self) -> list[Problem]:
        for module in self.modules:
            if module.is_test:
                self._check_with_overrides(module)
            else:
                for rule in module.ast.get("rules", []):
                    self._check_rule(module, rule)
        return sorted(set(self.problems))

    def _locals_of(self, node: Any, module: _Module) -> set[str]:
        """Every variable a rule binds (arguments, :=, =, some, every, comprehension heads): a
        name bound anywhere in the rule counts as local, so shadowing never reads as a rule."""
        names: set[str] = set()
        raw = self.sources[module.file].encode()

        def visit(n: Any) -> None:
            if isinstance(n, dict):
                if "AssignExpr" in n:
                    for side in ("lhs", "rhs") if n["AssignExpr"]["op"] == "Eq" else ("lhs",):
                        for var in _vars(n["AssignExpr"][side]):
                            names.add(var)
                if "SomeIn" in n:
                    for key in ("key", "value"):
                        if n["SomeIn"].get(key):
                            names.update(_vars(n["SomeIn"][key]))
                if "SomeVars" in n or "Every" in n:
                    spans = n.get("SomeVars", {}).get("vars", []) if "SomeVars" in n else \
                        [s for s in (n["Every"].get("key"), n["Every"].get("value")) if s]
                    for span in spans:
                        if isinstance(span, dict) and "start" in span:
                            names.add(raw[span["start"]:span["end"]].decode())
                for value in n.values():
                    visit(value)
            elif isinstance(n, list):
                for item in n:
                    visit(item)

        visit(node)
        return names

    def _check_rule(self, module: _Module, rule: dict[str, Any]) -> None:
        spec = rule.get("Spec")
        if not spec:
            return
        (head_kind, head), = spec["head"].items()
        local = self._locals_of(rule, module)
        if head_kind == "Func":
            for arg in head.get("args", []):
                local.update(_vars(arg))
        value = (head.get("assign") or {}).get("value")
        for body in spec["bodies"]:
            stmts = body["query"]["stmts"]
            guards = self._guards(module, stmts)
            after = frozenset(_established(stmts))  # the head value is evaluated once the body holds
            if value is not None:
                self._check_term(module, value, local, guards, after)
            if body.get("assign"):
                self._check_term(module, body["assign"].get("value"), local, guards, after)
            self._check_query(module, stmts, local, guards, frozenset())
        if not spec["bodies"] and value is not None:
            self._check_term(module, value, local, set(), frozenset())

    def _guards(self, module: _Module, stmts: list[dict[str, Any]]) -> set[str]:
        """Texts of the values a strict RFC 3339 `regex.match` in these statements has checked."""
        checked: set[str] = set()
        for stmt in stmts:
            kind, body = _kind(stmt["literal"])
            if kind != "Expr":
                continue
            call_kind, call = _kind(body["expr"])
            if call_kind != "Call" or _dotted(call["fcn"]) != "regex.match" or len(call["params"]) != 2:
                continue
            pattern = self._string_value(module, call["params"][0])
            if pattern is not None and is_strict_rfc3339_pattern(pattern):
                checked.add(_text(call["params"][1]))
        return checked

    def _string_value(self, module: _Module, term: Any) -> str | None:
        kind, body = _kind(term)
        if kind in ("String", "RawString"):
            value: str = body["value"]  # the AST's string literal
            return value
        path = self._resolve(module, term, set())
        info = self.rules.get(path) if path else None
        if info is not None and info.constant is not None and not info.conditional:
            constant_kind, constant = _kind(info.constant)
            if constant_kind in ("String", "RawString"):
                constant_value: str = constant["value"]
                return constant_value
        return None

    def _check_query(self, module: _Module, stmts: list[dict[str, Any]], local: set[str], guards: set[str],
                     known: frozenset[str]) -> None:
        for index, stmt in enumerate(stmts):
            kind, body = _kind(stmt["literal"])
            before = known | frozenset(_established(stmts[:index]))
            if kind == "NotExpr":
                self._check_not(module, body["expr"], local, before)
            for term in _subterms(body):
                self._check_term(module, term, local, guards, before)

    def _check_term(self, module: _Module, term: Any, local: set[str], guards: set[str],
                    known: frozenset[str]) -> None:
        kind, body = _kind(term)
        if kind in _COMPREHENSIONS:
            stmts = body["query"]["stmts"]
            inner = guards | self._guards(module, stmts)
            self._check_query(module, stmts, local, inner, known)
            for key in ("term", "key", "value"):
                if body.get(key) is not None:
                    self._check_term(module, body[key], local, inner, known | frozenset(_established(stmts)))
            return
        if kind == "Call" and _dotted(body["fcn"]) == PARSE_TIME:
            arg = body["params"][0] if body.get("params") else None
            if arg is not None and not ({_text(t) for t in _refs_in(arg)} & guards):
                line, col = _span(body)
                self.problems.append(Problem(
                    module.file, line, col,
                    f"not portable: {PARSE_TIME} over a value no strict RFC 3339 regex.match in this body "
                    "has checked — OPA raises on times regorus accepts (a lower-case 't', second 60) and "
                    "the reverse; check it first, or use data.ztcp.common.parse_time "
                    f"({GUIDE})"))
        for sub in _subterms(body):
            self._check_term(module, sub, local, guards, known)

    def _check_not(self, module: _Module, expr: Any, local: set[str], known: frozenset[str]) -> None:
        kind, body = _kind(expr)
        operands: list[Any] = []
        what = ""
        if kind in ("Var", "RefDot", "RefBrack"):
            _, parts = _flatten(expr)
            operands = [t for k, t in parts if k == "index"]
            what = "a reference with a computed key"
        elif kind == "BoolExpr" and body["op"] == "Eq":
            # `not a == b` agrees in both engines when each side is a plain reference or value.
            refs = ("Var", "RefDot", "RefBrack")
            operands = [side for side in (body["lhs"], body["rhs"]) if _kind(side)[0] not in refs]
            operands += [t for side in (body["lhs"], body["rhs"]) for k, t in _flatten(side)[1] if k == "index"]
            what = "an == with a computed operand"
        elif kind == "BoolExpr":
            operands, what = [body["lhs"], body["rhs"]], f"a comparison ({body['op']})"
        elif kind == "Membership":
            operands = [t for t in (body.get("key"), body.get("value"), body.get("collection")) if t is not None]
            what = "`in`"
        elif kind == "Call":
            operands, what = list(body.get("params", [])), f"a call of {_dotted(body['fcn'])}"
        elif kind in ("BinExpr", "ArithExpr", "UnaryExpr"):
            operands, what = list(_subterms(body)), "an arithmetic or set expression"
        undefined = [t for t in operands if self.maybe_undefined(module, t, local, known)]
        if undefined:
            line, col = _span(body if isinstance(body, dict) else {})
            self.problems.append(Problem(
                module.file, line, col,
                f"not portable: `not` over {what} whose operand {_text(undefined[0])} may be undefined — "
                "OPA evaluates it first and fails the negation, regorus holds it (opa#1877); test it "
                f"positively in a helper rule and write `not helper` ({GUIDE})"))

    # -- with overrides in tests ---------------------------------------------------------------

    def _whole_reads(self) -> dict[tuple[str, ...], list[tuple[str, int, int]]]:
        """Data documents policy modules read as a whole (a reference that stops at them)."""
        reads: dict[tuple[str, ...], list[tuple[str, int, int]]] = {}
        for module in self.modules:
            if module.is_test:
                continue
            for ref in _all_refs(module.ast.get("rules", [])):
                base, parts = _flatten(ref)
                if _kind(base)[0] != "Var" or any(k == "index" for k, _ in parts):
                    continue  # a computed key reads below the document, at the exact path
                path = self._resolve(module, ref, set())
                if path is None or len(path) < 2 or self._rule_at(path) is not None:
                    continue
                reads.setdefault(path, []).append((module.file, *_span(_kind(ref)[1])))
        return reads

    def _check_with_overrides(self, module: _Module) -> None:
        reads = None
        for stmt in _all_stmts(module.ast.get("rules", [])):
            for mod in stmt.get("with_mods") or []:
                target = self._resolve(module, mod["refr"], set())
                if target is None or target[0] != "data" or self._rule_at(target) is not None:
                    continue
                value_kind, _ = _kind(mod["as"])
                if value_kind in _LITERALS or value_kind == "Array":
                    continue  # scalars and arrays replace in both engines
                reads = self._whole_reads() if reads is None else reads
                for length in range(len(target) - 1, 1, -1):
                    if target[:length] in reads:
                        where = ", ".join(f"{file}:{line}" for file, line, _ in sorted(set(reads[target[:length]])))
                        w_line, w_col = _span(_kind(mod["refr"])[1])
                        self.problems.append(Problem(
                            module.file, w_line, w_col,
                            f"not portable: `with {'.'.join(target)} as …` overrides an object while "
                            f"{where} read(s) its parent {'.'.join(target[:length])} whole — OPA merges "
                            "the override into it, regorus replaces it; read the setting at its own path "
                            f"there ({GUIDE})"))
                        break


def _established(stmts: list[dict[str, Any]]) -> Iterator[str]:
    """Texts of the references positive statements evaluate outside comprehensions: once such a
    statement has held, each of them was defined."""
    for stmt in stmts:
        kind, body = _kind(stmt["literal"])
        if kind == "Expr":
            yield from (_text(r) for r in _refs_in(body["expr"]))
        elif kind == "SomeIn":
            yield from (_text(r) for r in _refs_in(body["collection"]))


def _vars(term: Any) -> Iterator[str]:
    kind, body = _kind(term)
    if kind == "Var":
        yield body["value"]
    elif kind in ("Array", "Object", "Set"):
        for sub in _subterms(body):
            yield from _vars(sub)


def _dotted(term: Any) -> str:
    base, parts = _flatten(term)
    kind, body = _kind(base)
    name = body.get("value", "?") if kind == "Var" else "?"
    return ".".join([name, *[p if k == "field" else "[…]" for k, p in parts]])


def _text(term: Any) -> str:
    kind, body = _kind(term)
    if kind in ("Var", "RefDot", "RefBrack"):
        base, parts = _flatten(term)
        out = _text(base) if _kind(base)[0] != "Var" else _kind(base)[1]["value"]
        for part_kind, part in parts:
            out += f".{part}" if part_kind == "field" else f"[{_text(part)}]"
        return out
    if kind in ("String", "RawString"):
        return json.dumps(body["value"])
    if kind in ("Number", "Bool"):
        return json.dumps(body["value"])
    if kind == "Call":
        return f"{_dotted(body['fcn'])}(…)"
    return kind.lower() or "?"


def _refs_in(term: Any) -> Iterator[Any]:
    kind, body = _kind(term)
    if kind in ("Var", "RefDot", "RefBrack"):
        yield term
    for sub in _subterms(body) if kind not in ("Var", "RefDot", "RefBrack") else ():
        yield from _refs_in(sub)


def _all_refs(node: Any) -> Iterator[Any]:
    """Outermost references anywhere in a module's rules."""
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in ("Var", "RefDot", "RefBrack"):
            yield node
            _, parts = _flatten(node)
            for part_kind, part in parts:
                if part_kind == "index":
                    yield from _all_refs(part)
            return
        for key, value in node.items():
            if key not in ("span",):
                yield from _all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_refs(item)


def _all_stmts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "literal" in node and "span" in node:
            yield node
        for value in node.values():
            yield from _all_stmts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_stmts(item)


def portability_problems(modules: Mapping[str, str]) -> list[Problem]:
    """Every non-portable construct in ``modules`` (path → source; all must parse)."""
    if not modules:
        return []
    return _Analysis(modules).run()
