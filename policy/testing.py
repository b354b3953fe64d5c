"""``ztcp policy test``: run the ``test_*`` rules of ``*_test.rego`` modules, with coverage.

Semantics follow ``opa test``: a test passes when its rule evaluates to ``true``; ``false`` or
undefined is a failure; an evaluation error is an error. Coverage is regorus' line coverage over
the policy (non-test) modules; the threshold applies to the total over those files.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from policy.engine import engine_message, module_infos, new_engine, problem_from_engine_error
from policy.errors import ValidationFailed
from policy.pack import PolicyPack

TEST_PREFIX = "test_"


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest class

    package: str
    name: str
    file: str
    line: int
    outcome: str  # pass | fail | error
    duration_ms: float
    message: str | None = None

    @property
    def id(self) -> str:
        return f"{self.package}.{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "package": self.package,
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 3),
            "message": self.message,
        }


@dataclass(frozen=True)
class FileCoverage:
    file: str
    covered: tuple[int, ...]
    not_covered: tuple[int, ...]

    @property
    def percent(self) -> float:
        total = len(self.covered) + len(self.not_covered)
        return 100.0 if total == 0 else 100.0 * len(self.covered) / total

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "covered_lines": len(self.covered),
            "not_covered_lines": len(self.not_covered),
            "percent": round(self.percent, 2),
            "not_covered": list(self.not_covered),
        }


@dataclass
class TestReport:
    __test__ = False

    results: list[TestResult] = field(default_factory=list)
    coverage: list[FileCoverage] | None = None

    @property
    def passed(self) -> int:
        return sum(r.outcome == "pass" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.outcome == "fail" for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.outcome == "error" for r in self.results)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0

    @property
    def coverage_percent(self) -> float | None:
        if self.coverage is None:
            return None
        covered = sum(len(c.covered) for c in self.coverage)
        total = covered + sum(len(c.not_covered) for c in self.coverage)
        return 100.0 if total == 0 else 100.0 * covered / total

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "total": len(self.results),
            "results": [r.as_dict() for r in self.results],
        }
        if self.coverage is not None:
            out["coverage"] = {
                "percent": round(self.coverage_percent or 0.0, 2),
                "files": [c.as_dict() for c in self.coverage],
            }
        return out


def run_tests(pack: PolicyPack, *, run: str | None = None, coverage: bool = False) -> TestReport:
    """Run the pack's tests (optionally only ids matching the regex ``run``)."""
    try:
        pattern = re.compile(run) if run else None
    except re.error as exc:
        raise ValidationFailed([f"--run: invalid regular expression: {exc}"], what="test filter") from None
    try:
        engine = new_engine(pack, coverage=coverage)
    except Exception as exc:
        problem = problem_from_engine_error(exc, next(iter(sorted(pack.modules)), "."), pack.modules)
        raise ValidationFailed([str(problem)]) from None
    report = TestReport()
    for info in sorted(module_infos(engine), key=lambda i: (i.file, i.package)):
        if not info.file.endswith("_test.rego"):
            continue
        seen: set[str] = set()
        for rule in info.rules:
            if not rule.name.startswith(TEST_PREFIX) or rule.kind == "Func" or rule.name in seen:
                continue
            seen.add(rule.name)  # a test may have several bodies; it is one test
            test_id = f"{info.package}.{rule.name}"
            if pattern and not pattern.search(test_id):
                continue
            report.results.append(_run_one(engine, info.package, rule.name, info.file, rule.line))
    if coverage:
        report.coverage = _coverage(engine, pack)
    return report


def _run_one(engine: Any, package: str, name: str, file: str, line: int) -> TestResult:
    start = time.perf_counter()
    try:
        value = engine.eval_rule(f"{package}.{name}")
        outcome, message = ("pass", None) if value is True else ("fail", _failure_text(value))
    except Exception as exc:
        text = engine_message(exc)
        outcome, message = ("error", text.replace("\n", " ").strip())
    finally:
        engine.take_prints()
    return TestResult(package, name, file, line, outcome, (time.perf_counter() - start) * 1000.0, message)


def _failure_text(value: Any) -> str:
    return "undefined" if value is None else f"evaluated to {json.dumps(value)[:80]}"


def _coverage(engine: Any, pack: PolicyPack) -> list[FileCoverage]:
    report = json.loads(engine.get_coverage_report_as_json())
    by_file = {f["path"]: f for f in report.get("files", [])}
    out = []
    for path in sorted(pack.policy_modules):
        entry = by_file.get(path, {"covered": [], "not_covered": []})
        out.append(
            FileCoverage(path, tuple(sorted(entry.get("covered", []))), tuple(sorted(entry.get("not_covered", []))))
        )
    return out
