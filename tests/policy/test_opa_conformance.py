"""The default pack decides identically under OPA v1 itself and both modes of the embedded engine.

OPA is the Go library (``github.com/open-policy-agent/opa/v1/rego``, v1.20) loaded in process from
opa-golib-python-bindings (``policy.opa``); ``make test`` installs it (``scripts/install-opa-lib.sh``).
Every test here is marked ``opa`` and is skipped, with the reason, only when that library cannot load.

* The pack's own Rego tests (every ``test_*`` rule) pass under OPA, as under regorus.
* OPA, the regorus RVM and the regorus interpreter — the PDP's own engine objects
  (``pdp.engine.RegorusEngine``) — give the same outcome on every input of the corpus: the fixed
  scenarios and seeded random inputs of ``test_default_pack``, edge-case times, the pack's
  ``conformance/*.json`` (every input on which the engines ever differed) and 600 seeded malformed
  variants of all of them (dropped keys, odd types, case changes, empty values).
* The comparison can fail: each defect the pack was rewritten for, put back into a copy of the pack,
  makes the engines part again on the shipped corpus.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from pdp.engine import RegorusEngine, conformance_inputs
from pdp.errors import EngineError
from policy import PolicyPack, load_pack, pack_from_files
from policy.conformance import mutations
from policy.opa import OpaLibrary, Outcome, available

_OK, _WHY = available()
pytestmark = [pytest.mark.opa, pytest.mark.skipif(not _OK, reason=f"OPA library cannot load: {_WHY}")]

_spec = importlib.util.spec_from_file_location("default_pack_cases", Path(__file__).with_name("test_default_pack.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

PACK = load_pack()
MUTATIONS = 600
SEED = 20261204

# Times every engine must treat alike: as "no time" unless strictly RFC 3339 (see common.rego).
EDGE_TIMES = [
    "2026-11-23t10:00:00+08:00", "2026-11-23T10:00:00z", "2026-11-23T23:59:60+08:00",
    "2026-11-23T10:00:00+24:00", "2026-11-23T10:00:00+08:60", "2026-02-30T10:00:00+08:00",
    "2023-02-29T10:00:00+08:00", "2026-13-01T10:00:00+08:00", "2026-11-23T24:00:00+08:00",
    "2026-11-23 10:00:00+08:00", "2026-11-23T10:00:00.Z", "0000-01-01T00:00:00Z", "2300-01-01T00:00:00Z",
    "\uff12\uff10\uff12\uff16-11-23T10:00:00+08:00", "2024-02-29T10:00:00+08:00",
    "2026-11-23T10:00:00.1234567891+08:00",
]


def corpus_base(pack: PolicyPack) -> list[dict[str, Any]]:
    edge = [cases.agency_input(context={"time": t}) for t in EDGE_TIMES]
    return cases.conformance_inputs() + cases.RANDOM_INPUTS + edge + conformance_inputs(pack)


CORPUS = corpus_base(PACK) + mutations(corpus_base(PACK), MUTATIONS, SEED)


class Engines:
    """OPA and the PDP's two regorus modes over one pack."""

    def __init__(self, pack: PolicyPack) -> None:
        self.opa = OpaLibrary(pack)
        self.rvm = RegorusEngine(pack, mode="rvm")
        self.interpreter = RegorusEngine(pack, mode="interpreter")
        assert self.rvm.mode == "rvm" and self.interpreter.mode == "interpreter"

    @staticmethod
    def _regorus(engine: RegorusEngine, doc: dict) -> Outcome:
        try:
            return Outcome("value", engine.evaluate(doc))
        except EngineError as exc:
            return Outcome("error", detail=str(exc))

    def outcomes(self, doc: dict) -> tuple[Outcome, Outcome, Outcome]:
        return self.opa.outcome(doc), self._regorus(self.rvm, doc), self._regorus(self.interpreter, doc)

    def disagreements(self, docs: list[dict]) -> list[tuple[int, str]]:
        found = []
        for index, doc in enumerate(docs):
            opa, rvm, interp = self.outcomes(doc)
            if not (opa.same_as(rvm) and opa.same_as(interp)):
                found.append((index, f"OPA {opa} | RVM {rvm} | interpreter {interp}"))
        return found

    def close(self) -> None:
        self.opa.close()


@pytest.fixture(scope="module")
def engines():
    both = Engines(PACK)
    yield both
    both.close()


def _shown(found: list[tuple[int, str]], docs: list[dict]) -> str:
    return "\n".join(f"#{i}: {what}\n  input: {json.dumps(docs[i])[:600]}" for i, what in found[:5])


# --- the pack's own tests ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def opa_with_tests():
    with OpaLibrary(PACK, include_tests=True) as opa:
        yield opa


@pytest.mark.parametrize("rule", cases.REGO_TESTS, ids=[r.removeprefix("data.ztcp.") for r in cases.REGO_TESTS])
def test_rego_unit_test_under_opa(opa_with_tests: OpaLibrary, rule: str):
    outcome = opa_with_tests.outcome(None, rule.removeprefix("data."))
    assert outcome.kind == "value" and outcome.value is True, str(outcome)


def test_a_failing_rego_test_is_reported_under_opa():
    files = {**PACK.files, "ztcp/test/probe_test.rego": b"package ztcp.probe_test\nimport rego.v1\n"
                                                        b"test_false if { 1 == 2 }\n"}
    with OpaLibrary(pack_from_files(files), include_tests=True) as opa:
        assert opa.run_tests(["ztcp.probe_test.test_false"])["ztcp.probe_test.test_false"].kind == "undefined"


# --- decisions on the corpus -------------------------------------------------------------------


def test_corpus_is_large_and_varied(engines: Engines):
    assert len(CORPUS) - len(corpus_base(PACK)) >= 500  # the seeded malformed variants
    assert len(conformance_inputs(PACK)) > 50  # the shipped inputs that once split the engines
    effects = {o.value["effect"] for o in (engines.opa.outcome(d) for d in CORPUS) if o.kind == "value"}
    assert effects == {"permit", "step_up", "deny"}


def test_opa_rvm_and_interpreter_agree_on_the_corpus(engines: Engines):
    found = engines.disagreements(CORPUS)
    assert found == [], f"{len(found)} of {len(CORPUS)} inputs split the engines:\n{_shown(found, CORPUS)}"


def test_the_pack_never_errs_on_the_corpus(engines: Engines):
    """Fail closed by the pack's own default (policy_incomplete), not by an engine error: an error
    is where engines have been seen to differ (raise in one, undefined in another)."""
    errors = [i for i, doc in enumerate(CORPUS) if engines.opa.outcome(doc).kind != "value"]
    assert errors == [], _shown([(i, "error") for i in errors], CORPUS)


def test_the_issues_examples_decide_alike(engines: Engines):
    """The cases of the issue, by name: a missing subject.type (score 0 vs 60 before) and a time
    with a lower-case t (regorus permitted, OPA erred)."""
    no_type = cases.officer_input(**cases.NIGHT)
    del no_type["subject"]["type"]
    opa, rvm, interp = engines.outcomes(no_type)
    assert opa.same_as(rvm) and opa.same_as(interp)
    assert opa.value["reasons"] == ["unknown_subject_type"] and opa.value["risk"]["score"] == 60
    lower_t = cases.agency_input(context={"time": "2026-11-23t10:00:00+08:00"})
    opa, rvm, interp = engines.outcomes(lower_t)
    assert opa.same_as(rvm) and opa.same_as(interp)
    assert opa.value["effect"] == "deny" and opa.value["reasons"] == ["agreement_expired"]
    assert engines.outcomes(cases.agency_input())[0].value["effect"] == "permit"  # the well-formed time


# --- the comparison catches each defect the pack was rewritten for ------------------------------


def _variant(edits: dict[str, tuple[str, str]]) -> PolicyPack:
    files = dict(PACK.files)
    for name, (old, new) in edits.items():
        text = files[name].decode()
        assert text.count(old) == 1, (name, old)
        files[name] = text.replace(old, new).encode()
    return pack_from_files(files)


SHIPPED = conformance_inputs(PACK)

# defect → (the edit that puts it back, the engine then standing apart on some shipped input)
DEFECTS: dict[str, tuple[dict[str, tuple[str, str]], str]] = {
    # OPA evaluates the operand before the `not`: a missing operand fails it in OPA only.
    "not over `in` with an input operand": (
        {"ztcp/authz.rego": ("not data.ztcp.common.known_subject_type",
                             "not input.subject.type in data.ztcp.common.known_subject_types")}, "OPA"),
    "not over a data key from input": (
        {"ztcp/risk.rego": ("applicable_name(name) if not factors_limited",
                            "applicable_name(name) if not subject_factors[input.subject.type]")}, "OPA"),
    "not over is_string(input…)": (
        {"ztcp/external.rego": ("legal_basis_required\" if not data.ztcp.common.legal_basis_given",
                                "legal_basis_required\" if not is_string(input.purpose.legal_basis)")}, "OPA"),
    # The lax pattern let a lower-case t through: regorus parses it, OPA raises.
    "lax RFC 3339": (
        {"ztcp/common.rego": ("\tregex.match(rfc3339_re, s)\n",
                              "\tregex.match(`^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]"
                              "\\d{2}:\\d{2})$`, s)\n")}, "OPA"),
    # regorus' interpreter raises on `some r in "a string"`; its RVM and OPA iterate nothing.
    "iterating an input that may be a string": (
        {"ztcp/common.rego": ("roles := {r | is_array(input.subject.roles); some r in input.subject.roles}",
                              "roles := {r | some r in input.subject.roles}")}, "interpreter"),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_reintroduced_defect_splits_the_engines_on_the_shipped_inputs(defect: str):
    edits, odd_one = DEFECTS[defect]
    variant = Engines(_variant(edits))
    apart = set()
    try:
        for doc in SHIPPED:
            opa, rvm, interp = variant.outcomes(doc)
            if not (opa.same_as(rvm) and opa.same_as(interp)):
                apart.add("OPA" if rvm.same_as(interp) else "interpreter" if opa.same_as(rvm)
                          else "RVM" if opa.same_as(interp) else "all three")
    finally:
        variant.close()
    assert odd_one in apart, f"{defect}: the shipped conformance inputs no longer expose it ({apart})"


def test_parent_read_with_child_override_fails_a_rego_test_under_opa():
    """Reading data.ztcp.config as a whole while a test overrides data.ztcp.config.max_rows.search
    with an object: OPA merges the override into what the rule reads, regorus replaces it."""
    variant = _variant({"ztcp/obligations.rego": (
        "action_limits := data.ztcp.config.max_rows[input.action]",
        "cfg := data.ztcp.config\n\naction_limits := cfg.max_rows[input.action]")})
    test = "ztcp.bulk_test.test_search_row_limit_default"
    with OpaLibrary(variant, include_tests=True) as opa:
        assert opa.run_tests([test])[test].kind == "undefined"
    with OpaLibrary(PACK, include_tests=True) as opa:
        assert opa.run_tests([test])[test].value is True
