"""Engines: compile errors fail at load, regorus and regopy agree on the default pack, OPA when present."""

from __future__ import annotations

import os
import threading

import pytest

from pdp.engine import GuardedEngine, OpaEngine, create_engine, release_thread_engines
from pdp.errors import ConfigurationError, EngineError, NoPolicy
from policy import load_pack, pack_from_files


def _input(roles, *, case="C-2026-0001", managed=True, zone="internal", action="read",
           classification="personal", method="fido2", off_hours=False, dataset="insured_persons"):
    return {
        "subject": {"id": "emp-0042", "type": "employee", "roles": roles, "org_unit": "taipei-03",
                    "citizen_ref": None,
                    "auth": {"method": method, "mfa": True, "auth_time": 0, "token_age_s": 60}},
        "device": {"id": "d1", "managed": managed, "compliant": managed,
                   "posture": {"baseline_ok": managed, "edr_running": managed, "disk_encrypted": managed,
                               "patch_age_days": 3}},
        "context": {"ip": "10.0.0.1", "network_zone": zone, "channel": "counter",
                    "time": "2026-11-23T10:00:00+08:00", "client_time": None, "geo": None},
        "resource": {"type": "insured_person", "dataset": dataset, "record_id": "r1",
                     "citizen_ref": "cr_SAMPLE" + "A" * 45 + "B", "fields": ["name", "address", "bank_account"],
                     "classification": classification},
        "action": action,
        "purpose": {"code": "benefit_review", "case_id": case, "legal_basis": None, "consent_id": None,
                    "justification": None, "break_glass": False},
        "signals": {"auth_strength": 3 if method == "fido2" else 1, "token_age_s": 60, "recent_denies_1h": 0,
                    "failed_step_ups_1h": 0, "device_first_seen": not managed, "off_hours": off_hours,
                    "holiday": False, "local_hour": 2 if off_hours else 10, "impossible_travel": False,
                    "travel_speed_kmh": 0, "request_rate_1m": 1, "distinct_citizens_10m": 1,
                    "distinct_citizens_1h": 1, "first_dataset_access": False, "self_record": False},
    }


SCENARIOS = [
    _input(["case_officer"]),
    _input(["case_officer"], case="C-404"),
    _input(["case_officer"], managed=False, zone="internet", off_hours=True),
    _input(["case_officer"], classification="special", dataset="medical_records", method="password"),
    _input(["supervisor"], action="export"),
    _input(["case_officer"], action="export"),
    _input(["counter_staff"]),
    _input([]),
]


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def _same(ra: dict, rb: dict) -> bool:
    return (ra["effect"] == rb["effect"] and sorted(ra.get("reasons", [])) == sorted(rb.get("reasons", []))
            and ra["risk"]["score"] == rb["risk"]["score"]
            and sorted(ra.get("permitted_fields", [])) == sorted(rb.get("permitted_fields", [])))


@pytest.mark.parametrize("kind", ["regorus-interpreter", "regopy"])
def test_engines_agree_with_the_default_rvm_engine_on_the_default_pack(pack, kind):
    """Our conformance check: regorus RVM (the default) vs regorus's interpreter vs regopy.

    The pack avoids the builtins where regopy 1.5.2 is wrong (see the next test), so all agree."""
    rvm = create_engine(pack, "regorus")
    assert rvm.mode == "rvm"
    other = create_engine(pack, kind)
    for doc in SCENARIOS:
        assert _same(rvm.evaluate(doc), other.evaluate(doc)), doc["subject"]["roles"]


def test_pack_outside_the_rvm_subset_falls_back_to_the_interpreter():
    files = {"ztcp/authz.rego": b"package ztcp.authz\nimport rego.v1\n"
                                b"detail[\"x\"] := 1 if input.a\n"
                                b"decision := {\"effect\": \"deny\", \"reasons\": [\"r\"], \"risk\": {\"score\": 1}, "
                                b"\"detail\": detail}\n"}
    engine = create_engine(pack_from_files(files), "regorus")
    assert engine.mode == "interpreter"
    assert engine.evaluate({"a": True})["effect"] == "deny"


def test_regopy_min_divergence_is_real():
    """Pins the rego-cpp defect that (with speed) made regorus the default; fails once it is fixed."""
    files = {"a.rego": b"package ztcp.authz\nimport rego.v1\ndecision := {\"effect\": \"deny\", "
                       b"\"risk\": {\"score\": min([100, input.n])}}\n"}
    small = pack_from_files(files)
    assert create_engine(small, "regorus").evaluate({"n": 60})["risk"]["score"] == 60
    assert create_engine(small, "regopy").evaluate({"n": 60})["risk"]["score"] == 100


def test_engines_are_usable_from_many_threads(pack):
    engine = create_engine(pack, "regorus")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert engine.evaluate(SCENARIOS[0])["effect"] in ("permit", "step_up")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            release_thread_engines()  # regorus engines must be dropped on their own thread

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_policy_that_does_not_compile_fails_at_load_with_location():
    broken = pack_from_files({"ztcp/authz.rego": b"package ztcp.authz\n\ndecision := {\n"})
    with pytest.raises(EngineError) as e:
        create_engine(broken, "regorus")
    assert "ztcp/authz.rego:" in str(e.value)
    assert "Stack backtrace" not in str(e.value)


def test_policy_without_decision_is_an_engine_error_not_a_permit():
    empty = pack_from_files({"ztcp/authz.rego": b"package ztcp.authz\n\nother := 1\n"})
    guard = GuardedEngine(create_engine(empty, "regorus"), timeout_ms=500)
    with pytest.raises(EngineError):
        guard.evaluate(SCENARIOS[0])
    guard.close()


def test_guard_without_engine_is_no_policy():
    guard = GuardedEngine(None)
    with pytest.raises(NoPolicy):
        guard.evaluate({})
    guard.close()


def test_unknown_engine_kind():
    with pytest.raises(ConfigurationError):
        create_engine(load_pack(), "wasm")


def test_unreachable_opa_fails_closed(unused_tcp_port):
    engine = OpaEngine(f"http://127.0.0.1:{unused_tcp_port}", timeout_s=0.2)
    with pytest.raises(EngineError):
        engine.evaluate(SCENARIOS[0])


@pytest.mark.opa_server
@pytest.mark.skipif(not os.environ.get("ZTCP_OPA_URL"), reason="needs an OPA server with our bundle: set ZTCP_OPA_URL")
def test_remote_opa_matches_embedded(pack):
    remote = OpaEngine(os.environ["ZTCP_OPA_URL"], timeout_s=2)
    local = create_engine(pack, "regorus")
    for doc in SCENARIOS:
        assert remote.evaluate(doc)["effect"] == local.evaluate(doc)["effect"]


def test_rvm_is_used_only_when_it_agrees_with_the_interpreter():
    """A pack whose conformance input exposes an RVM/interpreter disagreement runs interpreted.

    ``x := input.missing`` in a body: the interpreter (like OPA) makes the body fail, regorus 0.13's
    RVM binds a placeholder and carries on — fail-open (pinned in tests/policy/test_default_pack.py)."""
    import json

    files = {
        "ztcp/authz.rego": b"package ztcp.authz\nimport rego.v1\n"
                           b"default decision := {\"effect\": \"deny\", \"reasons\": [\"default\"], "
                           b"\"risk\": {\"score\": 0}}\n"
                           b"decision := {\"effect\": \"permit\", \"reasons\": [\"x\"], "
                           b"\"risk\": {\"score\": 0}} if {\n"
                           b"  allow\n}\n"
                           b"allow if {\n  x := input.missing\n}\n",
        "conformance/inputs.json": json.dumps([{"other": 1}]).encode(),
    }
    pack = pack_from_files(files)
    engine = create_engine(pack, "regorus")
    assert engine.mode == "interpreter"  # the gate caught the disagreement
    assert engine.evaluate({"other": 1})["effect"] == "deny"
    without_corpus = create_engine(pack_from_files({"ztcp/authz.rego": files["ztcp/authz.rego"]}), "regorus")
    # the probe input alone also exposes it here; a pack's corpus covers what the probe cannot
    assert without_corpus.mode == "interpreter"


def test_the_gate_also_tries_malformed_inputs(monkeypatch, caplog):
    """A pack that agrees on its well-formed conformance input but parts the modes on a malformed
    one (regorus' interpreter raises on `some r in "a string"`, its RVM iterates nothing) runs
    interpreted, because the gate also tries seeded malformed variants — and says so."""
    import json
    import logging

    import pdp.engine as engine_module

    files = {
        "ztcp/authz.rego": b"package ztcp.authz\nimport rego.v1\n"
                           b"roles := {r | some r in input.subject.roles}\n"
                           b"default decision := {\"effect\": \"deny\", \"reasons\": [\"default\"], "
                           b"\"risk\": {\"score\": 0}}\n"
                           b"decision := {\"effect\": \"permit\", \"reasons\": [\"r\"], "
                           b"\"risk\": {\"score\": count(roles)}} if input.subject\n",
        "conformance/inputs.json": json.dumps([{"subject": {"roles": ["clerk"]}}]).encode(),
    }
    pack = pack_from_files(files)
    monkeypatch.setattr(engine_module, "_GATE_VERDICTS", {})
    monkeypatch.setattr(engine_module, "GATE_MUTATIONS", 0)
    assert create_engine(pack, "regorus").mode == "rvm"  # the well-formed inputs alone agree
    monkeypatch.setattr(engine_module, "_GATE_VERDICTS", {})
    monkeypatch.setattr(engine_module, "GATE_MUTATIONS", 120)
    with caplog.at_level(logging.WARNING, logger="ztcp.pdp.engine"):
        engine = create_engine(pack, "regorus")
    assert engine.mode == "interpreter"
    assert "malformed variant" in caplog.text and "using the interpreter" in caplog.text
    with pytest.raises(EngineError):  # the interpreter errs: the PDP denies (engine_error)
        engine.evaluate({"subject": {"roles": "clerk"}})


def test_the_default_pack_passes_the_gate_with_malformed_inputs():
    from pdp.engine import GATE_MUTATIONS, conformance_inputs

    pack = load_pack()
    assert GATE_MUTATIONS >= 100 and len(conformance_inputs(pack)) > 50  # the shipped inputs are read
    assert create_engine(pack, "regorus").mode == "rvm"
