"""`ztcp policy …` end to end through click: exit codes, officer tokens, the whole lifecycle."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from cli.main import ztcp
from policy import RevisionStore, pack_from_files, replay_input, verify_bundle
from policy.engine import new_engine
from server.bootstrap import system_keys
from server.settings import load_settings


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, token: str | None = None, input: str | None = None):
    env = {"ZTCP_TOKEN": token} if token else {}
    return runner.invoke(ztcp, ["policy", *args], env=env, input=input, catch_exceptions=False)


def issue(runner: CliRunner, sub: str, *roles: str) -> str:
    args = ["token", "issue", "--sub", sub, "--mfa", "--method", "fido2", "--json"]
    for role in roles:
        args += ["--role", role]
    result = runner.invoke(ztcp, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["token"]


@pytest.fixture
def officers(runner):
    return {
        "alice": issue(runner, "alice", "security_officer"),
        "bob": issue(runner, "bob", "security_officer"),
        "eve": issue(runner, "eve", "case_officer"),
    }


def _variant(files: dict[str, bytes], deny: int) -> dict[str, bytes]:
    out = dict(files)
    config = json.loads(out["ztcp/config/data.json"])
    config["thresholds"]["deny"] = deny
    out["ztcp/config/data.json"] = (json.dumps(config, indent=2) + "\n").encode()
    return out


# --- checks ----------------------------------------------------------------------------------


def test_validate_exit_codes_and_locations(runner, make_pack, base_files):
    good = make_pack()
    result = run(runner, "validate", str(good))
    assert result.exit_code == 0 and result.output.strip().endswith(": ok")
    base_files["ztcp/broken.rego"] = b"package ztcp.broken\n\nimport rego.v1\n\np if {\n\tinput.a ==\n}\n"
    bad = make_pack(base_files)
    result = run(runner, "validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}/ztcp/broken.rego:7:1: expecting expression" in result.output
    doc = json.loads(run(runner, "validate", str(bad), "--json").output)
    assert doc["ok"] is False and doc["problems"][0]["line"] == 7
    assert run(runner, "validate", str(bad.parent / "missing")).exit_code == 1


def test_validate_default_pack(runner):
    assert run(runner, "validate").exit_code == 0


def test_test_command(runner, make_pack, base_files):
    good = make_pack()
    result = run(runner, "test", str(good), "-v", "--coverage")
    assert result.exit_code == 0, result.output
    assert "PASS data.ztcp.authz_test.test_read_permitted" in result.output and " ms) " in result.output
    assert "ztcp/authz.rego" in result.output and "3 passed, 0 failed" in result.output
    assert run(runner, "test", str(good), "--run", "read_permitted", "--threshold", "100").exit_code == 1
    assert run(runner, "test", str(good), "--run", "no_such_test").exit_code == 1
    doc = json.loads(run(runner, "test", str(good), "--json", "--threshold", "10").output)
    assert doc["ok"] and doc["passed"] == 3 and doc["coverage"]["percent"] > 10

    base_files["ztcp/authz_test.rego"] += (
        b'\ntest_wrong if {\n\tauthz.decision.effect == "permit" with input as {}\n}\n'
    )
    failing = make_pack(base_files)
    result = run(runner, "test", str(failing))
    assert result.exit_code == 1
    assert "FAIL data.ztcp.authz_test.test_wrong" in result.output
    assert "3 passed, 1 failed" in result.output


# --- lifecycle -------------------------------------------------------------------------------


def test_officer_token_required(runner, make_pack, officers):
    pack = make_pack()
    result = runner.invoke(ztcp, ["policy", "propose", str(pack), "-m", "x"], env={"ZTCP_TOKEN": ""})
    assert result.exit_code == 2 and "needs a token" in result.output
    result = run(runner, "propose", str(pack), "-m", "x", token=officers["eve"])
    assert result.exit_code == 2 and "lacks role security_officer" in result.output
    result = run(runner, "propose", str(pack), "-m", "x", token="not-a-jwt")
    assert result.exit_code == 2
    with RevisionStore.in_home(load_settings().ensure_home()) as store:
        assert store.history() == []


def test_full_lifecycle(runner, make_pack, base_files, officers, tmp_path):
    alice, bob = officers["alice"], officers["bob"]
    r1_dir = make_pack()
    result = run(runner, "propose", str(r1_dir), "-m", "initial", token=alice)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("proposed r1 (sha256:")

    # Maker-checker: the author cannot approve; publishing unapproved is refused.
    result = run(runner, "approve", "r1", token=alice)
    assert result.exit_code == 2 and "cannot approve" in result.output
    result = run(runner, "publish", "r1", token=alice)
    assert result.exit_code == 2 and "0 of 1 required approval" in result.output
    assert run(runner, "publish", "r1", "--emergency", token=alice).exit_code == 1  # no --reason
    assert run(runner, "approve", "r1", "--comment", "reviewed", token=bob).exit_code == 0
    result = run(runner, "publish", "r1", token=alice)
    assert result.exit_code == 0 and "published as active" in result.output

    # A tightened revision, published, then rolled back.
    r2_dir = make_pack(_variant(base_files, 50))
    assert run(runner, "propose", str(r2_dir), "-m", "deny at 50", token=bob).exit_code == 0
    diff = run(runner, "diff", "r1", "r2")
    assert '-    "deny": 70\n+    "deny": 50' in diff.output
    assert run(runner, "diff", "active", str(r2_dir), "--exit-code").exit_code == 1
    assert run(runner, "diff", str(r1_dir), "--exit-code").exit_code == 0
    assert run(runner, "diff", "r1", "r2", "--stat").output == "M ztcp/config/data.json\n"
    assert json.loads(run(runner, "diff", "r1", "r2", "--json").output)["files"]["modified"] == [
        "ztcp/config/data.json"
    ]
    assert run(runner, "approve", "r2", token=alice).exit_code == 0
    assert run(runner, "publish", "r2", token=bob).exit_code == 0

    out = tmp_path / "r2.tar.gz"
    result = run(runner, "bundle", "r2", "-o", str(out))
    assert result.exit_code == 0, result.output
    keys = system_keys(load_settings()).public_keys("bundle-signing")
    assert verify_bundle(out.read_bytes(), keys).data["ztcp"]["config"]["thresholds"]["deny"] == 50

    history = json.loads(run(runner, "history", "--json").output)
    assert history["active"] == "r2"
    assert [(r["id"], r["status"]) for r in history["revisions"]] == [
        ("r2", "published"),
        ("r1", "superseded"),
    ]

    result = run(runner, "rollback", "--reason", "too strict", token=alice)
    assert result.exit_code == 0 and "r1" in result.output
    show = json.loads(run(runner, "show", "active", "--json").output)
    assert show["id"] == "r1" and show["approvals"][0]["approver"] == "bob"
    assert any(e["type"] == "policy.rollback" and e["reason"] == "too strict" for e in show["events"])

    events = json.loads(run(runner, "events", "--json").output)
    types = [e["type"] for e in events]
    assert types.count("policy.refused") == 2
    assert types.count("policy.publish") == 2 and "policy.rollback" in types
    refused = [e for e in events if e["type"] == "policy.refused"]
    assert {e["detail"]["code"] for e in refused} == {"self_approval", "not_approved"}
    assert all(e["actor"] == "alice" for e in refused)
    assert "policy.refused" in run(runner, "events").output

    # Emergency publish: recorded with its reason.
    r3_dir = make_pack(_variant(base_files, 55))
    assert run(runner, "propose", str(r3_dir), "-m", "hotfix", token=alice).exit_code == 0
    result = run(runner, "publish", "r3", "--emergency", "--reason", "INC-7 exfiltration", token=alice)
    assert result.exit_code == 0 and "EMERGENCY" in result.output
    last = json.loads(run(runner, "events", "--json").output)[-1]
    assert (last["type"], last["reason"], last["actor"]) == (
        "policy.emergency_publish",
        "INC-7 exfiltration",
        "alice",
    )

    # Shadow publish and clear.
    r4_dir = make_pack(_variant(base_files, 65))
    assert run(runner, "propose", str(r4_dir), "-m", "try 65", token=bob).exit_code == 0
    assert run(runner, "publish", "r4", "--shadow", token=bob).exit_code == 0
    assert json.loads(run(runner, "history", "--json").output)["shadow"] == "r4"
    assert run(runner, "rollback", "--shadow", token=bob).exit_code == 0
    assert json.loads(run(runner, "history", "--json").output)["shadow"] is None


def test_propose_refuses_broken_or_failing_pack(runner, make_pack, base_files, officers):
    broken = dict(base_files)
    broken["ztcp/authz.rego"] += b"\nbad if {\n"
    result = run(runner, "propose", str(make_pack(broken)), "-m", "x", token=officers["alice"])
    assert result.exit_code == 1 and "nothing proposed" in result.output
    failing = dict(base_files)
    failing["ztcp/authz_test.rego"] += b"\ntest_no if false\n"
    result = run(runner, "propose", str(make_pack(failing)), "-m", "x", token=officers["alice"])
    assert result.exit_code == 1 and "FAIL data.ztcp.authz_test.test_no" in result.output
    with RevisionStore.in_home(load_settings().ensure_home()) as store:
        assert store.history() == []


def test_bundle_of_unpublished_revision_is_refused(runner, make_pack, officers, tmp_path):
    assert run(runner, "propose", str(make_pack()), "-m", "x", token=officers["alice"]).exit_code == 0
    result = run(runner, "bundle", "r1", "-o", str(tmp_path / "x.tar.gz"))
    assert result.exit_code == 2 and "never published" in result.output
    assert not (tmp_path / "x.tar.gz").exists()
    assert run(runner, "show", "r9").exit_code == 1


# --- simulation ------------------------------------------------------------------------------


def _write_log(base_files: dict[str, bytes], n: int) -> list[str]:
    """Decisions logged through the PDP's own DecisionLog (the file the CLI replays)."""
    from pdp.decision_log import DecisionLog

    baseline = pack_from_files(base_files)
    engine = new_engine(baseline, include_tests=False)
    dlog = DecisionLog(load_settings().ensure_home() / "decisions.db")
    ids = []
    now = time.time()
    for i in range(n):
        doc = {"action": "read", "resource": {"fields": ["name"]}, "signals": {"recent_denies_1h": i % 7}}
        engine.set_input(replay_input(doc))
        decision_id = f"dec-{i:04d}"
        ids.append(decision_id)
        dlog.submit(
            {
                "decision_id": decision_id,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - n + i)),
                "ts": now - n + i,
                "input": doc,
                "result": engine.eval_rule("data.ztcp.authz.decision"),
                "bundles": {"ztcp": {"revision": "r1", "digest": baseline.digest}},
            }
        )
    assert dlog.flush()
    dlog.close()
    return ids


def test_simulate_against_the_decision_log(runner, make_pack, base_files, officers):
    assert run(runner, "simulate", str(make_pack()), token=officers["alice"]).exit_code == 1  # no log yet
    _write_log(base_files, 70)  # recent_denies cycles 0..6: 10 entries with 4 (score 60, step_up)
    candidate = make_pack(_variant(base_files, 50))
    result = run(runner, "simulate", str(candidate), "--last", "70", "--json", token=officers["alice"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["total"] == 70 and report["baseline_revisions"] == {"r1": 70}
    assert [(t["from"], t["to"], t["count"]) for t in report["transitions"]] == [("step_up", "deny", 10)]
    assert report["transitions"][0]["samples"] == ["dec-0004", "dec-0011", "dec-0018", "dec-0025", "dec-0032"]
    assert [(m["from"], m["to"], m["count"]) for m in report["risk_level_moves"]] == [("medium", "high", 10)]

    again = run(runner, "simulate", str(candidate), "--last", "70", "--json", token=officers["alice"])
    assert again.output == result.output  # deterministic

    gate = run(runner, "simulate", str(candidate), "--since", "24h", "--fail-on-change", token=officers["alice"])
    assert gate.exit_code == 1
    assert "step_up → deny" in gate.output and "dec-0004" in gate.output
    assert run(runner, "propose", str(candidate), "-m", "deny at 50", token=officers["bob"]).exit_code == 0
    by_revision = run(runner, "simulate", "r1", "--last", "70", "--json", token=officers["alice"])
    assert json.loads(by_revision.output)["transitions"] == report["transitions"]
    assert json.loads(by_revision.output)["candidate"]["revision"] == "r1"
    same = run(runner, "simulate", str(make_pack()), "--last", "5", "--fail-on-change", token=officers["alice"])
    assert same.exit_code == 0, same.output
    assert run(runner, "simulate", str(candidate), "--last", "5", token=officers["eve"]).exit_code == 2
    assert (
        run(runner, "simulate", str(candidate), "--last", "5", "--since", "1h", token=officers["alice"]).exit_code == 1
    )


def test_help_everywhere(runner):
    for cmd in (
        "validate",
        "test",
        "diff",
        "simulate",
        "propose",
        "approve",
        "publish",
        "rollback",
        "history",
        "show",
        "bundle",
        "events",
    ):
        result = run(runner, cmd, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, cmd


def test_diff_between_directories(runner, make_pack, base_files):
    a, b = make_pack(), make_pack(_variant(base_files, 60))
    result = run(runner, "diff", str(a), str(b))
    assert result.exit_code == 0
    assert f"--- {a}/ztcp/config/data.json" in result.output and '+    "deny": 60' in result.output
    assert run(runner, "diff", str(a), str(b), "--exit-code").exit_code == 1
    missing = run(runner, "diff", "r1", str(b))
    assert missing.exit_code == 1 and "no revision 'r1'" in missing.output


def test_refused_operator_token_is_recorded_as_policy_refused(tmp_path, monkeypatch):
    """Probing the lifecycle without a valid officer token leaves an admin event for the SIEM."""
    from click.testing import CliRunner

    from cli.main import ztcp
    from policy import RevisionStore
    from server.settings import load_settings

    runner = CliRunner()
    monkeypatch.delenv("ZTCP_TOKEN", raising=False)
    result = runner.invoke(ztcp, ["policy", "approve", "r99"])
    assert result.exit_code == 2
    monkeypatch.setenv("ZTCP_TOKEN", "not-a-token")
    result = runner.invoke(ztcp, ["policy", "publish", "r1"])
    assert result.exit_code == 2
    with RevisionStore.in_home(load_settings().ensure_home()) as store:
        refused = [e for e in store.iter_since(None) if e.type == "policy.refused"]
    assert [(e.actor, e.detail["action"], e.detail["code"]) for e in refused] == [
        ("unauthenticated", "approve", "operator_refused"), ("unauthenticated", "publish", "operator_refused")]
    assert "not-a-token" not in str([e.reason for e in refused])
