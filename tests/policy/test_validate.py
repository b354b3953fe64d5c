"""`policy validate`: every problem reported as file:line:col, nothing valid flagged."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import load_pack, validate_dir, validate_files
from policy.engine import Problem, problem_from_engine_error


def test_small_pack_is_valid(base_files):
    assert validate_files(base_files) == []


def test_default_pack_is_valid():
    pack = load_pack()
    assert validate_files(pack.files) == [], "the shipped default pack must validate"


def test_syntax_error_is_reported_with_file_line_col(base_files):
    base_files["ztcp/broken.rego"] = b"package ztcp.broken\n\nimport rego.v1\n\nallow if {\n  input.x ==\n}\n"
    problems = validate_files(base_files)
    assert [str(p) for p in problems] == ["ztcp/broken.rego:7:1: expecting expression"]


def test_every_broken_file_is_reported(base_files):
    base_files["a.rego"] = b"package a\nimport rego.v1\np if {\n"
    base_files["b.rego"] = b"package b\nimport rego.v1\nq := [1, 2\n"
    problems = validate_files(base_files)
    assert {p.file for p in problems} == {"a.rego", "b.rego"}
    assert all(p.line >= 3 for p in problems)


def test_unknown_function_and_unsafe_variable_are_compile_errors(base_files):
    base_files["ztcp/x.rego"] = b"package ztcp.x\n\nimport rego.v1\n\np if {\n\tnot_a_builtin(1)\n}\n"
    base_files["ztcp/y.rego"] = b"package ztcp.y\n\nimport rego.v1\n\nq if {\n\tundefined_var == 1\n}\n"
    problems = {p.file: p for p in validate_files(base_files)}
    assert problems["ztcp/x.rego"].line == 6
    assert "not_a_builtin" in problems["ztcp/x.rego"].message
    assert (problems["ztcp/y.rego"].line, problems["ztcp/y.rego"].col) == (6, 2)
    assert "unsafe" in problems["ztcp/y.rego"].message


def test_conflicting_complete_rules_found_by_evaluation(base_files):
    base_files["ztcp/c.rego"] = b"package ztcp.c\n\nimport rego.v1\n\nv := 1\n\nv := 2\n"
    problems = validate_files(base_files)
    assert len(problems) == 1
    assert (problems[0].file, problems[0].line) == ("ztcp/c.rego", 7)
    assert "conflict" in problems[0].message


def test_schema_violation_points_into_the_data_file(files_with):
    config = {"allowed_actions": ["read"], "weights": {"recent_denies": -5}, "thresholds": {"step_up": 40}}
    files = files_with(config=config)
    problems = validate_files(files)
    text = files["ztcp/config/data.json"].decode()
    by_message = {p.message.split(":")[0]: p for p in problems}
    weight = by_message["data.ztcp.config.weights.recent_denies"]
    assert weight.file == "ztcp/config/data.json"
    line = text.splitlines()[weight.line - 1]
    assert line[weight.col - 1 :].startswith("-5")
    missing = by_message["data.ztcp.config.thresholds"]
    assert "'deny' is a required property" in missing.message
    assert (
        text.splitlines()[missing.line - 1].strip().startswith("{")
        or "thresholds" in text.splitlines()[missing.line - 1]
    )


def test_yaml_data_is_located_too(files_with):
    files = files_with()
    del files["ztcp/config/data.json"]
    files["ztcp/config/data.yaml"] = (
        b"allowed_actions: [read]\nweights:\n  recent_denies: 10\nthresholds:\n  step_up: 140\n  deny: 70\n"
    )
    problems = validate_files(files)
    assert [(p.file, p.line, p.col) for p in problems] == [("ztcp/config/data.yaml", 5, 12)]
    assert "140 is greater than the maximum of 100" in problems[0].message


def test_invalid_json_data_reported_with_position(base_files):
    base_files["ztcp/config/data.json"] = b'{\n  "allowed_actions": ["read",]\n}\n'
    problems = validate_files(base_files)
    assert len(problems) == 1
    assert (problems[0].file, problems[0].line) == ("ztcp/config/data.json", 2)
    assert problems[0].message.startswith("invalid JSON")


def test_schema_without_data_and_invalid_schema(base_files):
    base_files["schema/limits.schema.json"] = json.dumps({"type": "object"}).encode()
    base_files["schema/bad.schema.json"] = json.dumps({"x-ztcp-data-path": "ztcp.config", "type": 12}).encode()
    messages = sorted(str(p) for p in validate_files(base_files))
    assert any(m.startswith("schema/limits.schema.json:1:1: no data at data.ztcp.limits") for m in messages)
    assert any(m.startswith("schema/bad.schema.json") and "invalid JSON Schema" in m for m in messages)


def test_explicit_data_path_in_schema(base_files):
    base_files["bureau/data.json"] = b'{"protected_citizens": "not-a-list"}'
    base_files["schema/bureau.schema.json"] = json.dumps(
        {"x-ztcp-data-path": "bureau", "properties": {"protected_citizens": {"type": "array"}}}
    ).encode()
    problems = validate_files(base_files)
    assert [(p.file, p.line, p.col) for p in problems] == [("bureau/data.json", 1, 24)]


def test_no_policy_modules(tmp_path):
    (tmp_path / "only_test.rego").write_text("package t\nimport rego.v1\ntest_x if true\n")
    problems = validate_dir(tmp_path)
    assert any("no policy modules" in p.message for p in problems)


def test_non_utf8_module(base_files):
    base_files["ztcp/latin1.rego"] = "package ztcp.l\n# caf\u00e9\n".encode("latin-1")
    problems = validate_files(base_files)
    assert [(p.file, p.message.split(" ")[0]) for p in problems] == [("ztcp/latin1.rego", "not")]


def test_engine_error_without_location_falls_back_to_file():
    problem = problem_from_engine_error(RuntimeError("something odd\n\nStack backtrace:\n 0: x"), "f.rego")
    assert problem == Problem("f.rego", 1, 1, "something odd")


_FILLER = st.sampled_from(
    [
        "{n} := 1",
        "{n} := [1, 2, 3]",
        '{n} := {{"a": 1}}',
        "{n} if input.a == 1",
        "{n} if {{ count([1]) == 1 }}",
    ]
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    before=st.lists(st.one_of(_FILLER, st.just("# comment"), st.just("")), max_size=12),
    after=st.lists(_FILLER, max_size=6),
    indent=st.text(alphabet=" \t", max_size=4),
)
def test_syntax_error_position_is_exact(before, after, indent):
    """Wherever a broken rule sits, the reported line and (character) column are those of its `}`."""
    lines = ["package ztcp.gen", "", "import rego.v1", ""]
    lines += [t.format(n=f"r{i}") for i, t in enumerate(before)]
    broken_line = len(lines) + 1
    lines.append(indent + "bad if { input.a == }")
    lines += [t.format(n=f"s{i}") for i, t in enumerate(after)]
    problems = validate_files({"ztcp/gen.rego": ("\n".join(lines) + "\n").encode()})
    assert len(problems) == 1
    assert (problems[0].file, problems[0].line) == ("ztcp/gen.rego", broken_line)
    assert problems[0].col == len(indent) + len("bad if { input.a == ") + 1


@pytest.mark.parametrize("name", ["data.json", "data.yaml"])
def test_data_document_must_be_an_object(base_files, name):
    base_files.pop("ztcp/config/data.json")
    base_files[f"ztcp/config/{name}"] = b"[1, 2]\n"
    problems = validate_files(base_files)
    assert problems and problems[0].message.endswith("a data document must be a JSON/YAML object")


def test_data_key_defined_twice_names_the_file(base_files):
    base_files["ztcp/data.json"] = b'{"config": {"allowed_actions": ["read"]}}'
    problems = validate_files(base_files)
    assert len(problems) == 1
    assert problems[0].file.endswith("data.json")
    assert "defined twice" in problems[0].message


def test_sets_of_objects_do_not_break_the_evaluation_check(base_files):
    base_files["ztcp/s.rego"] = b'package ztcp.s\n\nimport rego.v1\n\nfactors contains {"name": "a", "points": 1}\n'
    assert validate_files(base_files) == []


def test_unknown_function_found_in_the_default_pack():
    """Compile errors are found in a large real pack too (its tests use `with`, which the
    compiler lacks, and must not hide policy errors)."""
    files = dict(load_pack().files)
    files["ztcp/extra.rego"] = (
        b'package ztcp.extra\n\nimport rego.v1\n\ncheck if {\n\tinput.action == "read"\n\tnot_a_function(input.x)\n}\n'
    )
    problems = validate_files(files)
    assert [(p.file, p.line, p.col) for p in problems] == [("ztcp/extra.rego", 7, 2)]
    assert "not_a_function" in problems[0].message


def test_test_modules_are_parsed_but_not_compiled(base_files):
    base_files["ztcp/helper_test.rego"] = b"package ztcp.helper_test\n\nimport rego.v1\n\nfx(x) := x\n"
    base_files["ztcp/uses_test.rego"] = (
        b"package ztcp.uses_test\n\nimport rego.v1\n\nimport data.ztcp.helper_test as h\n\n"
        b"test_uses_helper if h.fx(1) == 1 with input as {}\n"
    )
    assert validate_files(base_files) == []
