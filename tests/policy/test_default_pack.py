"""The default bureau pack (policy/rego/) on the real engines.

* The issue's scenarios, evaluated with regorus exactly as the PDP does (policy modules + pack
  data, one input per decision).
* Every ``test_*`` rule of the pack, each one a pytest case, on regorus.
* Engine conformance: regopy (rego-cpp) must produce the same decision as regorus for a spread of
  inputs. regopy runs in a child process because it can crash the interpreter (SIGSEGV) on some
  constructs — see ``test_regopy_crashes_on_with_input`` — and a crash must not take pytest down.
"""

from __future__ import annotations

import copy
import json
import random
import re
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import regorus

from policy import load_pack
from policy.testing import run_tests
from policy.validate import validate_pack

PACK = load_pack()
DECISION = "data.ztcp.authz.decision"
CITIZEN = "cr_SAMPLEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"  # the sample case's citizen


def _engine(with_tests: bool = False) -> regorus.Engine:
    engine = regorus.Engine()
    modules = PACK.modules if with_tests else PACK.policy_modules
    for path, source in modules.items():
        engine.add_policy(path, source)
    engine.add_data(PACK.data)
    return engine


def _rego_tests() -> list[str]:
    found = []
    for _path, source in sorted(PACK.test_modules.items()):
        package = re.search(r"^package\s+(\S+)", source, re.M).group(1)
        found += [f"data.{package}.{name}" for name in re.findall(r"^(test_\w+)\s+if\b", source, re.M)]
    return found


REGO_TESTS = _rego_tests()


def officer_input(**changes: dict[str, Any]) -> dict[str, Any]:
    """A case officer (FIDO2 + MFA, managed compliant device, internal, 10:00) reading the sample case."""
    doc = {
        "subject": {
            "id": "emp-0042",
            "type": "employee",
            "roles": ["case_officer"],
            "org_unit": "taipei-03",
            "citizen_ref": None,
            "auth": {"method": "fido2", "mfa": True, "auth_time": 1795300000, "token_age_s": 120},
        },
        "device": {
            "id": "dev-9",
            "managed": True,
            "compliant": True,
            "posture": {
                "baseline_ok": True,
                "edr_running": True,
                "disk_encrypted": True,
                "patch_age_days": 12,
            },
        },
        "context": {
            "ip": "10.1.2.3",
            "network_zone": "internal",
            "channel": "counter",
            "time": "2026-11-23T10:00:00+08:00",
            "geo": {"lat": 25.03, "lon": 121.56, "country": "TW"},
        },
        "resource": {
            "type": "insured_person",
            "dataset": "insured_persons",
            "record_id": "r-123",
            "citizen_ref": CITIZEN,
            "fields": ["name", "address", "bank_account"],
            "classification": "personal",
        },
        "action": "read",
        "purpose": {
            "code": "benefit_review",
            "case_id": "C-2026-0001",
            "legal_basis": "LIA-Art-10",
            "consent_id": None,
            "justification": None,
            "break_glass": False,
        },
        "signals": {
            "auth_strength": 3,
            "token_age_s": 120,
            "recent_denies_1h": 0,
            "failed_step_ups_1h": 0,
            "device_first_seen": False,
            "off_hours": False,
            "holiday": False,
            "local_hour": 10,
            "impossible_travel": False,
            "travel_speed_kmh": 0,
            "request_rate_1m": 3,
            "distinct_citizens_10m": 2,
            "distinct_citizens_1h": 5,
            "first_dataset_access": False,
            "self_record": False,
        },
    }
    for section, patch in changes.items():
        if isinstance(patch, dict):
            doc[section] = {**doc[section], **patch}
        else:
            doc[section] = patch
    return doc


NIGHT = {
    "device": {"id": "dev-x", "managed": False, "compliant": False},
    "context": {"ip": "203.0.113.9", "network_zone": "internet", "time": "2026-11-23T02:00:00+08:00"},
    "signals": {"off_hours": True, "local_hour": 2, "device_first_seen": True},
}


def agency_input(**changes: dict[str, Any]) -> dict[str, Any]:
    doc = officer_input(
        subject={
            "id": "agency-tax",
            "type": "agency",
            "roles": ["external_agency"],
            "org_unit": "tax",
            "auth": {"method": "citizen_cert", "mfa": True, "auth_time": 1795300000, "token_age_s": 30},
        },
        device={"id": "gw", "managed": False, "compliant": False, "posture": {}},
        context={"network_zone": "exchange", "channel": "exchange"},
        resource={"fields": ["name", "address", "national_id"]},
        action="disclose",
        purpose={"code": "tax_assessment", "case_id": None, "legal_basis": "TCA-Art-30"},
    )
    for section, patch in changes.items():
        doc[section] = {**doc[section], **patch} if isinstance(patch, dict) else patch
    return doc


_ENGINE: list[regorus.Engine] = []


def _shared_engine() -> regorus.Engine:
    if not _ENGINE:
        _ENGINE.append(_engine())
    return _ENGINE[0]


def decide(doc: dict[str, Any], engine: regorus.Engine | None = None) -> dict[str, Any]:
    engine = engine or _engine()
    engine.set_input(doc)
    return engine.eval_rule(DECISION)


def factor_names(decision: dict[str, Any]) -> set[str]:
    return {f["name"] for f in decision["risk"]["factors"]}


# --- the pack itself ----------------------------------------------------------------------------


def test_pack_layout_and_schema_valid():
    assert "ztcp/authz.rego" in PACK.policy_modules
    assert "ztcp/test/fixtures_test.rego" in PACK.test_modules
    assert "schema/config.schema.json" in PACK.files
    assert "schema" not in PACK.data  # schemas are not data documents
    assert validate_pack(PACK) == []


def test_config_schema_rejects_bad_officer_edit():
    schema = json.loads(PACK.files["schema/config.schema.json"])
    good = PACK.data["ztcp"]["config"]
    jsonschema.Draft202012Validator(schema).validate(good)
    for mutate in (
        lambda c: c["risk"]["thresholds"].__setitem__("deny", "high"),
        lambda c: c["risk"]["weights"].__setitem__("unknown_factor", 5),
        lambda c: c["max_rows"]["export"].__setitem__("supervisor", 0),
        lambda c: c["masking"]["rules"].append({"dataset": "*", "field": "x"}),
        lambda c: c["need_to_know"]["outcomes"].__setitem__("not_assigned", "permit"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(schema).validate(bad)


def test_enough_rego_tests():
    assert len(REGO_TESTS) >= 45
    assert len(set(REGO_TESTS)) == len(REGO_TESTS)


@pytest.fixture(scope="module")
def test_engine() -> regorus.Engine:
    engine = _engine(with_tests=True)
    engine.set_input({})
    return engine


@pytest.mark.parametrize("rule", REGO_TESTS, ids=[r.removeprefix("data.ztcp.") for r in REGO_TESTS])
def test_rego_unit_test(test_engine: regorus.Engine, rule: str):
    assert test_engine.eval_rule(rule) is True


def test_rego_tests_cover_the_pack():
    """Through the project's own runner (``ztcp policy test --coverage``): every line of every
    policy module is exercised by some Rego test."""
    report = run_tests(PACK, coverage=True)
    assert report.ok and report.passed == len(REGO_TESTS)
    assert report.coverage_percent == pytest.approx(100.0)


def test_a_failing_rego_test_is_reported(test_engine: regorus.Engine):
    """The runner above must notice a false test (not just an erroring one)."""
    engine = _engine(with_tests=True)
    engine.add_policy("probe_test.rego", "package probe_test\nimport rego.v1\ntest_false if { 1 == 2 }\n")
    engine.set_input({})
    assert engine.eval_rule("data.probe_test.test_false") is not True


# --- the issue's scenarios ------------------------------------------------------------------------


def test_officer_assigned_case_permit():
    d = decide(officer_input())
    assert d["effect"] == "permit"
    assert d["reasons"] == ["assigned_case"]
    assert {"type": "record_provenance"} in d["obligations"]
    assert d["permitted_fields"] == ["address", "bank_account", "name"]
    assert d["risk"] == {"score": 0, "level": "low", "factors": []}


def test_officer_permit_names_its_factors():
    d = decide(officer_input(signals={"first_dataset_access": True}))
    assert d["effect"] == "permit"
    assert d["risk"]["factors"] == [
        {"name": "first_dataset_access", "points": 5, "detail": "first access to this dataset"}
    ]
    assert d["risk"]["score"] == 5


def test_officer_unmanaged_device_internet_at_night():
    d = decide(officer_input(**NIGHT))
    assert d["effect"] in {"step_up", "deny"}
    assert d["effect"] == "step_up"  # 25 + 10 + 15 + 10 = 60: between step_up (40) and deny (70)
    assert factor_names(d) == {"unmanaged_device", "new_device", "network_internet", "off_hours"}
    assert d["risk"]["score"] == 60 and d["risk"]["level"] == "high"
    assert d["reasons"] == ["risk_too_high"]
    assert d["obligations"] == [{"type": "step_up", "method": "fido2", "max_age": 300}]
    assert d["permitted_fields"] == []


def test_night_scenario_with_password_is_denied():
    changes = {
        **NIGHT,
        "subject": {"auth": {"method": "password", "mfa": False}},
        "signals": {**NIGHT["signals"], "auth_strength": 1},
    }
    d = decide(officer_input(**changes))
    assert d["effect"] == "deny"
    assert d["reasons"] == ["risk_too_high"]
    assert {"weak_auth", "no_mfa", "unmanaged_device"} <= factor_names(d)


def test_deny_by_default_always_has_reasons():
    for doc in (officer_input(subject={"type": "service"}), officer_input(purpose={"case_id": None}), {}):
        d = decide(doc)
        assert d["effect"] == "deny"
        assert d["reasons"], doc
        assert d["permitted_fields"] == [] and d["obligations"] == []


def test_masks_follow_role():
    reviewer = decide(officer_input(subject={"roles": ["reviewer"]}))
    assert {"type": "mask", "field": "bank_account", "style": "last4"} in reviewer["obligations"]
    officer = decide(officer_input())
    assert not [o for o in officer["obligations"] if o["type"] == "mask"]


def test_agency_minimum_necessary():
    d = decide(agency_input())
    assert d["effect"] == "permit"
    assert d["permitted_fields"] == ["address", "name"]  # national_id is not in DSA-2026-001
    expired = decide(agency_input(context={"time": "2028-01-01T00:00:00+08:00"}))
    assert expired["effect"] == "deny" and expired["reasons"] == ["agreement_expired"]


# --- engine conformance: regopy vs regorus ------------------------------------------------------

_REGOPY_CHILD = r"""
import json, sys, regopy
job = json.load(sys.stdin)
interp = regopy.Interpreter()
for path, source in job["modules"].items():
    interp.add_module(path, source)
interp.add_data_json(json.dumps(job["data"]))
results = []
for doc in job["inputs"]:
    interp.set_input_term(json.dumps(doc))
    out = interp.query("x = " + job["query"])
    # Only the parsed Python results: str()/binding() on failed or undefined outputs crash regopy.
    results.append(out.results[0].bindings.get("x") if len(out) else None)
json.dump(results, sys.stdout)
"""


def _regopy(
    inputs: list[dict], modules: dict[str, str] | None = None, data: Any = None, query: str = DECISION
) -> subprocess.CompletedProcess:
    job = {
        "modules": PACK.policy_modules if modules is None else modules,
        "data": PACK.data if data is None else data,
        "inputs": inputs,
        "query": query,
    }
    return subprocess.run(
        [sys.executable, "-c", _REGOPY_CHILD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=300,
    )


def conformance_inputs() -> list[dict[str, Any]]:
    night = officer_input(**NIGHT)
    return [
        officer_input(),
        night,
        officer_input(signals={"first_dataset_access": True, "off_hours": True, "distinct_citizens_1h": 500}),
        officer_input(subject={"roles": ["reviewer"]}),
        officer_input(subject={"roles": ["call_center"]}, resource={"fields": ["name", "phone", "employer"]}),
        officer_input(purpose={"case_id": "C-2026-0002"}),
        officer_input(purpose={"case_id": None}),
        officer_input(subject={"roles": ["counter_staff"]}, purpose={"case_id": None}),
        officer_input(purpose={"code": "marketing"}),
        officer_input(
            resource={"dataset": "medical_records", "fields": ["diagnosis"], "classification": "special"},
            purpose={
                "case_id": None,
                "break_glass": True,
                "justification": "Unconscious citizen at the counter, ambulance waiting.",
            },
        ),
        officer_input(
            resource={"dataset": "medical_records", "fields": ["diagnosis"]},
            subject={"auth": {"method": "otp", "mfa": True}},
            signals={"auth_strength": 2},
        ),
        officer_input(
            subject={"roles": ["supervisor"]},
            action="export",
            resource={"citizen_ref": None, "fields": ["name"]},
            purpose={"case_id": None},
        ),
        officer_input(
            subject={"roles": ["supervisor"]}, action="bulk_search", context={"network_zone": "vpn"}
        ),
        officer_input(
            subject={"roles": ["auditor"]},
            action="search",
            resource={"dataset": "provenance_events", "fields": ["actor"], "classification": "internal"},
        ),
        officer_input(subject={"roles": ["auditor"]}),
        officer_input(signals={"token_age_s": None, "travel_speed_kmh": None}),
        agency_input(),
        agency_input(purpose={"legal_basis": "OTHER"}),
        agency_input(context={"time": "not a time"}),
        agency_input(
            subject={"id": "mydata-bank-1", "type": "mydata_party", "roles": ["mydata_party"]},
            purpose={"consent_id": "CNS-0001", "legal_basis": None},
            resource={"fields": ["name", "insurance_type", "bank_account"]},
        ),
        officer_input(
            subject={
                "id": "cit-1",
                "type": "citizen",
                "roles": ["citizen"],
                "citizen_ref": CITIZEN,
                "auth": {"method": "citizen_cert", "mfa": True},
            },
            device={"managed": False, "compliant": False},
            context={"network_zone": "internet"},
            purpose={"case_id": None, "code": "self_service"},
        ),
        officer_input(
            subject={
                "id": "cit-1",
                "type": "citizen",
                "roles": ["citizen"],
                "citizen_ref": "cr_OTHER",
                "auth": {"method": "password", "mfa": False},
            },
            signals={"auth_strength": 1},
        ),
        {},
    ]


@pytest.fixture(scope="module")
def regopy_results() -> list[Any]:
    proc = _regopy(conformance_inputs())
    assert proc.returncode == 0, f"regopy child failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("index", range(len(conformance_inputs())))
def test_regopy_matches_regorus(regopy_results: list[Any], index: int):
    doc = conformance_inputs()[index]
    assert regopy_results[index] == decide(doc, _shared_engine())


def test_conformance_covers_every_effect():
    engine = _engine()
    effects = {decide(doc, engine)["effect"] for doc in conformance_inputs()}
    assert effects == {"permit", "step_up", "deny"}


def random_inputs(count: int, seed: int) -> list[dict[str, Any]]:
    """Seeded mixes of subject, role, device, network, dataset, action, purpose and signals."""
    rng = random.Random(seed)
    roles = ["case_officer", "reviewer", "supervisor", "counter_staff", "call_center", "auditor", "it_admin",
             "security_officer", "key_custodian", "janitor"]
    datasets = [("insured_persons", "personal"), ("claims", "personal"), ("medical_records", "special"),
                ("provenance_events", "internal"), ("office_locations", "public"), ("unknown_ds", None)]
    fields = ["name", "address", "national_id", "bank_account", "phone", "diagnosis", "employer", "salary"]
    methods = [("password", 1), ("otp", 2), ("fido2", 3), ("citizen_cert", 3)]
    docs = []
    for _ in range(count):
        dataset, classification = rng.choice(datasets)
        method, strength = rng.choice(methods)
        kind = rng.choice(["staff", "staff", "staff", "agency", "mydata", "citizen"])
        changes: dict[str, Any] = {
            "subject": {"roles": rng.sample(roles, rng.choice([1, 1, 2])),
                        "auth": {"method": method, "mfa": rng.random() < 0.7}},
            "device": {"managed": rng.random() < 0.7, "compliant": rng.random() < 0.7,
                       "posture": {"baseline_ok": rng.random() < 0.9, "edr_running": rng.random() < 0.9,
                                   "disk_encrypted": True, "patch_age_days": rng.choice([3, 40, None])}},
            "context": {"network_zone": rng.choice(["internal", "vpn", "exchange", "internet"]),
                        "time": rng.choice(["2026-11-23T10:00:00+08:00", "2028-03-01T09:00:00Z", "bogus"])},
            "resource": {"dataset": dataset, "classification": classification,
                         "citizen_ref": rng.choice([CITIZEN, "cr_OTHER", None]),
                         "fields": rng.sample(fields, rng.randint(0, 4))},
            "action": rng.choice(["read", "read", "search", "update", "export", "bulk_search", "disclose"]),
            "purpose": {"code": rng.choice(["benefit_review", "marketing", None]),
                        "case_id": rng.choice(["C-2026-0001", "C-2026-0002", "C-NONE", None]),
                        "break_glass": rng.random() < 0.15,
                        "justification": rng.choice([None, "too short", "Collapsed at counter, ambulance"])},
            "signals": {"auth_strength": rng.choice([strength, strength, None]),
                        "token_age_s": rng.choice([60, 5000, None]), "off_hours": rng.random() < 0.3,
                        "device_first_seen": rng.random() < 0.2, "recent_denies_1h": rng.choice([0, 5]),
                        "travel_speed_kmh": rng.choice([0, 2000, None]),
                        "request_rate_1m": rng.choice([3, 90]),
                        "distinct_citizens_10m": rng.choice([2, 50]), "self_record": rng.random() < 0.2,
                        "holiday": rng.random() < 0.1, "first_dataset_access": rng.random() < 0.2},
        }
        if kind == "agency":
            doc = agency_input(**{k: v for k, v in changes.items() if k not in {"subject"}})
            doc["purpose"]["legal_basis"] = rng.choice(["TCA-Art-30", "OTHER", None])
        elif kind == "mydata":
            doc = officer_input(**changes)
            doc["subject"] = {**doc["subject"], "id": "mydata-bank-1", "type": "mydata_party",
                              "roles": ["mydata_party"]}
            doc["purpose"]["consent_id"] = rng.choice(["CNS-0001", "CNS-NONE", None])
        elif kind == "citizen":
            doc = officer_input(**changes)
            doc["subject"] = {**doc["subject"], "id": "cit-1", "type": "citizen", "roles": ["citizen"],
                              "citizen_ref": rng.choice([CITIZEN, None])}
        else:
            doc = officer_input(**changes)
        docs.append(doc)
    return docs


RANDOM_INPUTS = random_inputs(150, seed=20261122)


def test_random_inputs_reach_every_effect():
    engine = _engine()
    effects = {decide(doc, engine)["effect"] for doc in RANDOM_INPUTS}
    assert effects == {"permit", "step_up", "deny"}


def test_regopy_matches_regorus_on_random_inputs():
    """regopy is slow (tens of ms per decision here), so it gets a slice of the random inputs."""
    sample = RANDOM_INPUTS[:40]
    proc = _regopy(sample)
    assert proc.returncode == 0, proc.stderr[-2000:]
    engine = _engine()
    mismatches = [i for i, got in enumerate(json.loads(proc.stdout)) if got != decide(sample[i], engine)]
    assert mismatches == []


def test_regorus_rvm_matches_interpreter():
    """regorus' bytecode VM (Program/Rvm) compiles the pack and decides identically — the PDP may
    use it for speed (see README, performance)."""
    data_json = json.dumps(PACK.data)
    program = regorus.Program.compile_from_modules(data_json, list(PACK.policy_modules.items()), [DECISION])
    vm = regorus.Rvm()
    vm.load_program(program)
    vm.set_data_json(data_json)
    engine = _engine()
    for doc in conformance_inputs() + RANDOM_INPUTS:
        vm.set_input_json(json.dumps(doc))
        assert json.loads(vm.execute()) == decide(doc, engine), doc


def test_regopy_with_input_divergence():
    """Known regopy 1.5.2 defect: a rule that calls any builtin, evaluated under ``with input as``,
    fails with an internal error ("shape `rego-localref` has no field `rego-refhead`") instead of
    a value, and ``str()`` of that failed output segfaults the interpreter. Every Rego unit test
    uses ``with input as``, so the pack's tests run on regorus only. If this starts failing,
    regopy fixed it: run REGO_TESTS on regopy too."""
    module = "package probe\nimport rego.v1\nr := count(input.x)\n"
    query = 'data.probe.r with input as {"x": [1, 2]}'
    engine = regorus.Engine()
    engine.add_policy("probe.rego", module)
    engine.set_input({})
    assert engine.eval_query(query)["result"][0]["expressions"][0]["value"] == 2  # OPA semantics
    proc = _regopy([{}], modules={"probe.rego": module}, data={}, query=query)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [None]


@pytest.mark.parametrize(
    ("expression", "opa_value"),
    [
        ("min([100, 20])", 20),  # regopy 1.5.2: 100 (string order)
        ('time.parse_rfc3339_ns("2027-12-31T00:00:00Z")', 1830211200000000000),  # regopy: undefined
    ],
)
def test_regopy_builtin_divergences_the_pack_avoids(expression: str, opa_value: Any):
    """Builtins regopy 1.5.2 gets wrong; the pack works around them (common.rego, risk.rego,
    obligations.rego). If one starts matching, the workaround may go."""
    module = f"package probe\nimport rego.v1\nr := {expression}\n"
    engine = regorus.Engine()
    engine.add_policy("probe.rego", module)
    assert engine.eval_rule("data.probe.r") == opa_value
    proc = _regopy([{}], modules={"probe.rego": module}, data={}, query="data.probe.r")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) != [opa_value]


def test_regorus_rvm_binds_undefined():
    """Known regorus 0.13 RVM defect: ``x := <undefined ref>`` in a rule body succeeds (x becomes
    "<undefined>") where OPA and the interpreter make the body fail — fail-open for a rule like
    ``allow if { x := input.missing }``. The pack guards every such assignment (is_array /
    is_string) so the RVM decides identically today; policy edits must keep doing so before the
    PDP runs the RVM. If this starts failing, the RVM was fixed."""
    module = "package probe\nimport rego.v1\nr if {\n\tx := input.missing\n}\n"
    engine = regorus.Engine()
    engine.add_policy("probe.rego", module)
    engine.set_input({})
    assert engine.eval_rule("data.probe.r") is None
    program = regorus.Program.compile_from_modules("{}", [("probe.rego", module)], ["data.probe.r"])
    vm = regorus.Rvm()
    vm.load_program(program)
    vm.set_data_json("{}")
    vm.set_input_json("{}")
    assert json.loads(vm.execute()) is True
