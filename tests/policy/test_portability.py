"""`policy validate` refuses constructs that decide differently under OPA than under regorus, at
file:line:col, and leaves their portable forms alone. (That each one really splits the engines
is shown on OPA itself in test_opa_conformance.py.)"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import ztcp
from policy import load_pack, validate_files
from policy.portability import is_strict_rfc3339_pattern, portability_problems

HEAD = "package ztcp.x\n\nimport rego.v1\n\n"
PACK = load_pack()


def problems_in(body: str, **extra: str) -> list[str]:
    modules = {"ztcp/x.rego": HEAD + body, **extra}
    return [str(p) for p in portability_problems(modules)]


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        ("p if {\n\tnot input.action in {\"read\"}\n}\n", 6),  # the examples
        ("p if {\n\tnot is_string(input.purpose.legal_basis)\n}\n", 6),
        ("p if {\n\tnot data.ztcp.config.subject_factors[input.subject.type]\n}\n", 6),
        ("p if {\n\tnot input.signals.rate > 60\n}\n", 6),
        ("p if {\n\tnot input.x != 1\n}\n", 6),
        ("p if {\n\tnot count(input.fields) == 0\n}\n", 6),
        ("p if {\n\tnot 1 in maybe\n}\n\nmaybe := {1} if input.y\n", 6),  # a rule without default
        ("p if {\n\tsome a in input.list\n\tnot startswith(a.name, \"x\")\n}\n", 7),  # a field of a local
        ("p if {\n\tnot f(g(1))\n}\n\nf(v) if v == 1\n\ng(v) := 1 if v == 2\n", 6),  # a function's result
    ],
)
def test_non_portable_negations_are_reported_where_they_are(rule: str, line: int):
    found = problems_in(rule)
    assert len(found) == 1, found
    assert found[0].startswith(f"ztcp/x.rego:{line}:")
    assert "not portable" in found[0] and "helper" in found[0]


@pytest.mark.parametrize(
    "rule",
    [
        "p if {\n\tnot allowed\n}\n\nallowed if input.action in {\"read\"}\n",  # the portable form
        "p if {\n\tnot input.subject.auth.mfa == true\n}\n",  # == between plain refs agrees
        "p if {\n\tnot input.a.b.c\n}\n",  # a plain reference agrees
        "p if {\n\tsome f in input.fields\n\tnot f in withheld\n}\n\nwithheld contains \"x\" if input.y\n",
        "p if {\n\tnot \"r\" in roles\n}\n\nroles := {r | some r in input.roles}\n",  # always defined
        "p if {\n\tis_array(input.fields)\n\tnot 1 in input.fields\n}\n",  # established just before
        "f(v) if {\n\tnot startswith(v, \"x\")\n}\n",  # a function's own argument is defined
        "p if {\n\tnot data.ztcp.config.roles[\"clerk\"]\n}\n",  # a constant key
    ],
)
def test_portable_negations_are_not_reported(rule: str):
    assert problems_in(rule) == []


def test_with_override_of_a_child_while_a_parent_is_read_whole():
    policy = HEAD + "cfg := data.ztcp.config\n\nlimit := cfg.max_rows[input.action].default\n"
    test = ("package ztcp.x_test\n\nimport rego.v1\n\n"
            "test_limit if {\n\tdata.ztcp.x.limit == 7 with input as {\"action\": \"search\"}\n"
            "\t\twith data.ztcp.config.max_rows.search as {\"default\": 7}\n}\n"
            "test_scalar if {\n\tdata.ztcp.x.limit == 7 with data.ztcp.config.max_rows.search.default as 7\n}\n")
    found = [str(p) for p in portability_problems({"ztcp/x.rego": policy, "ztcp/x_test.rego": test})]
    assert len(found) == 1, found  # the scalar override replaces in both engines
    assert found[0].startswith("ztcp/x_test.rego:7:")
    assert "ztcp/x.rego:5" in found[0] and "data.ztcp.config" in found[0]
    exact = HEAD + "limit := data.ztcp.config.max_rows[input.action].default\n"
    assert portability_problems({"ztcp/x.rego": exact, "ztcp/x_test.rego": test}) == []


def test_time_parsing_needs_a_strict_check_in_the_same_body():
    unguarded = "t := time.parse_rfc3339_ns(input.context.time)\n"
    lax = ("t := time.parse_rfc3339_ns(input.context.time) if {\n"
           "\tregex.match(`^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:\\d{2}([Zz]|[+-]\\d{2}:\\d{2})$`,"
           " input.context.time)\n}\n")
    assert [p.split(": ")[0] for p in problems_in(unguarded)] == ["ztcp/x.rego:5:27"]
    assert len(problems_in(lax)) == 1
    shipped = PACK.modules["ztcp/common.rego"]
    assert portability_problems({"ztcp/common.rego": shipped}) == []  # parse_time, guarded by rfc3339_re


def test_strictness_is_judged_by_trying_the_pattern():
    source = PACK.modules["ztcp/common.rego"]
    shipped = source.split("rfc3339_re := `", 1)[1].split("`", 1)[0]
    assert is_strict_rfc3339_pattern(shipped)
    assert not is_strict_rfc3339_pattern(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")  # 23:59:60
    assert not is_strict_rfc3339_pattern(shipped.replace("T(", "[Tt]("))
    assert not is_strict_rfc3339_pattern(shipped.replace("[0-9]", r"\d"))  # Unicode digits in regorus
    assert not is_strict_rfc3339_pattern("(")


def test_the_default_pack_is_portable_and_its_predecessor_was_not():
    assert portability_problems(PACK.modules) == []
    files = dict(PACK.files)
    files["ztcp/authz.rego"] = files["ztcp/authz.rego"].replace(
        b"not data.ztcp.common.known_subject_type", b"not input.subject.type in data.ztcp.common.known_subject_types")
    found = validate_files(files)
    assert [(p.file, p.line) for p in found] == [("ztcp/authz.rego", 16)]


def test_validate_command_refuses_a_non_portable_edit(tmp_path):
    for name, raw in PACK.files.items():
        path = tmp_path / "pack" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    edited = tmp_path / "pack" / "ztcp" / "bulk.rego"
    edited.write_text(edited.read_text().replace("\tnot zone_allowed\n",
                                                 "\tnot input.context.network_zone in cfg.network_zones\n"))
    result = CliRunner().invoke(ztcp, ["policy", "validate", str(tmp_path / "pack")], catch_exceptions=False)
    assert result.exit_code == 1
    line = next(i for i, t in enumerate(edited.read_text().splitlines(), 1) if "not input.context" in t)
    assert f"{tmp_path / 'pack'}/ztcp/bulk.rego:{line}:" in result.output
    assert "not portable" in result.output
