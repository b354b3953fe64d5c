"""`policy test`: pass / fail / error per test, filters, coverage and thresholds."""

from __future__ import annotations

import re

import pytest

from policy import ValidationFailed, load_pack, pack_from_files, run_tests

FAILING = b"""package ztcp.more_test

import rego.v1

import data.ztcp.authz

test_wrong_expectation if {
	authz.decision.effect == "permit" with input as {"action": "export", "resource": {"fields": []},
		"signals": {"recent_denies_1h": 0}}
}

test_undefined if {
	input.nothing == 1
}

test_error if {
	x := count(5)
	x == 1
}

test_two_bodies if false

test_two_bodies if true

helper := 1
"""


def test_all_pass_on_small_pack(base_files):
    report = run_tests(pack_from_files(base_files))
    assert (report.passed, report.failed, report.errors) == (3, 0, 0)
    assert report.ok
    assert all(r.duration_ms >= 0 for r in report.results)
    assert {r.file for r in report.results} == {"ztcp/authz_test.rego"}


def test_failures_and_errors_are_distinguished(base_files):
    base_files["ztcp/more_test.rego"] = FAILING
    report = run_tests(pack_from_files(base_files))
    outcome = {r.name: r for r in report.results}
    assert outcome["test_wrong_expectation"].outcome == "fail"
    assert outcome["test_wrong_expectation"].message == "undefined"
    assert outcome["test_undefined"].outcome == "fail"
    assert outcome["test_error"].outcome == "error"
    assert "count" in outcome["test_error"].message
    assert outcome["test_two_bodies"].outcome == "pass"  # any body true → true, as in OPA
    assert "helper" not in outcome
    assert not report.ok
    assert (report.failed, report.errors) == (2, 1)
    assert outcome["test_error"].line == 16


def test_run_filter(base_files):
    report = run_tests(pack_from_files(base_files), run=r"denie|step_up$")
    assert sorted(r.name for r in report.results) == ["test_export_denied", "test_many_denies_step_up"]
    with pytest.raises(ValidationFailed):
        run_tests(pack_from_files(base_files), run="(")


def test_coverage_per_policy_file(base_files):
    report = run_tests(pack_from_files(base_files), coverage=True)
    assert report.coverage is not None
    assert [c.file for c in report.coverage] == ["ztcp/authz.rego"]
    full = report.coverage_percent
    # Running only one test covers less of the policy.
    partial = run_tests(pack_from_files(base_files), run="read_permitted", coverage=True).coverage_percent
    assert partial is not None and full is not None
    assert partial < full <= 100.0
    assert report.as_dict()["coverage"]["files"][0]["not_covered"] == list(report.coverage[0].not_covered)


def test_broken_module_is_a_validation_failure(base_files):
    base_files["ztcp/broken.rego"] = b"package ztcp.broken\nimport rego.v1\np if {\n"
    with pytest.raises(ValidationFailed) as err:
        run_tests(pack_from_files(base_files))
    assert "ztcp/broken.rego:" in str(err.value)


def test_prints_in_tests_do_not_leak(base_files, capfd):
    base_files["ztcp/print_test.rego"] = b'package ztcp.print_test\nimport rego.v1\ntest_p if { print("hello") }\n'
    report = run_tests(pack_from_files(base_files))
    assert report.ok
    assert "hello" not in capfd.readouterr().out


def test_default_pack_tests_are_discovered_with_coverage():
    """Whether they pass is the pack's own suite (test_default_pack.py); here: the runner finds and
    runs every test_* rule in the pack's *_test.rego files and measures every policy file."""
    pack = load_pack()
    report = run_tests(pack, coverage=True)
    declared = sum(len(set(re.findall(r"^test_\w+", src, re.MULTILINE))) for src in pack.test_modules.values())
    assert len(report.results) == declared > 0
    assert [c.file for c in report.coverage] == sorted(pack.policy_modules)
