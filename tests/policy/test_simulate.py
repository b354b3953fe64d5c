"""What-if simulation: exact counts on a known log, determinism, bad entries, replay fidelity."""

from __future__ import annotations

import json
import random

import pytest

from policy import SimulationError, pack_from_files, replay_input, simulate
from policy.engine import new_engine


def regorus_evaluator():
    """The decision query on the real engine (the CLI passes the PDP's engine instead)."""
    engines = {}

    def evaluate(pack, doc):
        engine = engines.get(pack.digest)
        if engine is None:
            engine = engines[pack.digest] = new_engine(pack, include_tests=False)
        engine.set_input(doc)
        return engine.eval_rule("data.ztcp.authz.decision")

    return evaluate


def _with_config(files, **changes):
    out = dict(files)
    config = json.loads(out["ztcp/config/data.json"])
    for key, value in changes.items():
        if key == "deny":
            config["thresholds"]["deny"] = value
        else:
            config[key] = value
    out["ztcp/config/data.json"] = json.dumps(config).encode()
    return pack_from_files(out)


REQUESTS = (
    [("read", n) for n in range(7)] * 2  # 14
    + [("search", n) for n in (0, 3, 4, 5)]  # 4
    + [("export", 0)]  # 1
)


@pytest.fixture
def log(base_files):
    """A decision log made by the baseline pack (r1), one entry per request, in time order."""
    baseline = pack_from_files(base_files)
    evaluate = regorus_evaluator()
    entries = []
    for i, (action, denies) in enumerate(REQUESTS):
        doc = {
            "action": action,
            "resource": {"fields": ["name", "address"]},
            "signals": {"recent_denies_1h": denies},
            "purpose": {"code": "benefit_review", "justification_present": False, "justification_length": 0},
        }
        entries.append(
            {
                "decision_id": f"d-{i:03d}",
                "timestamp": f"2026-11-22T01:00:{i:02d}Z",
                "input": doc,
                "result": evaluate(baseline, replay_input(doc)),
                "bundles": {"ztcp": {"revision": "r1", "digest": baseline.digest}},
            }
        )
    return entries


def test_unchanged_candidate_changes_nothing(log, base_files):
    report = simulate(pack_from_files(base_files), log, regorus_evaluator())
    assert (report.total, report.replayed, report.changed, report.unchanged) == (19, 19, 0, 19)
    assert report.transitions == [] and report.risk_level_moves == [] and report.reasons == []
    assert not report.has_changes
    assert report.baseline_revisions == {"r1": 19}
    assert report.effects_before == report.effects_after == {"deny": 6, "permit": 7, "step_up": 6}


def test_lower_deny_threshold_known_counts(log, base_files):
    report = simulate(_with_config(base_files, deny=50), log, regorus_evaluator())
    assert [(m.before, m.after, m.count) for m in report.transitions] == [("step_up", "deny", 3)]
    assert report.transitions[0].samples == ["d-004", "d-011", "d-016"]  # read n=4 twice, search n=4
    assert [(m.before, m.after, m.count) for m in report.risk_level_moves] == [("medium", "high", 3)]
    assert (report.changed, report.effect_changed, report.unchanged) == (3, 3, 16)
    assert (report.fields_changed, report.obligations_changed) == (0, 3)
    assert [(r.reason, r.added, r.removed) for r in report.reasons] == [
        ("risk_step_up", 0, 3),
        ("risk_too_high", 3, 0),
    ]
    assert report.effects_after == {"deny": 9, "permit": 7, "step_up": 3}
    assert report.has_changes
    assert report.risk_score == {"mean_delta": 0.0, "max_increase": 0.0, "max_decrease": 0.0}


def test_removing_an_action_and_lowering_threshold(log, base_files):
    candidate = _with_config(base_files, deny=50, allowed_actions=["read"])
    report = simulate(candidate, log, regorus_evaluator(), samples=2)
    assert [(m.before, m.after, m.count, m.samples) for m in report.transitions] == [
        ("step_up", "deny", 4, ["d-004", "d-011"]),
        ("permit", "deny", 1, ["d-014"]),
    ]
    assert [(m.before, m.after, m.count) for m in report.risk_level_moves] == [
        ("medium", "high", 2),
        ("medium", "low", 2),
        ("high", "low", 1),
    ]
    assert (report.changed, report.effect_changed, report.fields_changed) == (6, 5, 1)
    reasons = {r.reason: (r.added, r.removed) for r in report.reasons}
    assert reasons == {
        "no_permit": (4, 0),
        "risk_step_up": (0, 4),
        "risk_too_high": (2, 1),
        "role_allows": (0, 1),
    }
    assert report.changed_samples == ["d-004", "d-011"]
    assert report.risk_score["max_decrease"] == -75.0


def test_deterministic_whatever_the_log_order(log, base_files):
    candidate = _with_config(base_files, deny=50, allowed_actions=["read"])
    expected = simulate(candidate, log, regorus_evaluator()).as_dict()
    for seed in range(5):
        shuffled = list(log)
        random.Random(seed).shuffle(shuffled)
        assert simulate(candidate, shuffled, regorus_evaluator()).as_dict() == expected
    assert json.dumps(expected, sort_keys=True)  # JSON-serialisable as is


def test_report_uses_logged_signals_not_recomputed_ones(log, base_files):
    """Same request, different logged signals → different outcomes under the candidate."""
    candidate = _with_config(base_files, deny=50)
    report = simulate(candidate, [log[3], log[4]], regorus_evaluator())  # read with 3 vs 4 recent denies
    assert report.effect_changed == 1 and report.transitions[0].samples == ["d-004"]


def test_malformed_entries_are_skipped_and_counted(log, base_files):
    broken = [{"decision_id": "x-1"}, {"decision_id": "x-2", "input": {}, "result": {"no": "effect"}}, "junk"]
    entries = [e for e in log[:3]] + [b for b in broken if isinstance(b, dict)]
    report = simulate(pack_from_files(base_files), entries, regorus_evaluator())
    assert (report.total, report.replayed, report.skipped) == (5, 3, 2)
    with pytest.raises(SimulationError):
        simulate(pack_from_files(base_files), broken[:2], regorus_evaluator())


def test_candidate_errors_counted_as_would_deny(log, base_files):
    def failing(pack, doc):
        if doc["signals"]["recent_denies_1h"] == 6:
            raise RuntimeError("engine exploded")
        return regorus_evaluator()(pack, doc)

    report = simulate(pack_from_files(base_files), log, failing)
    assert report.errors == 2 and report.error_samples == ["d-006", "d-013"]
    assert report.effects_after.get("error") == 2
    assert report.has_changes


def test_empty_log(base_files):
    report = simulate(pack_from_files(base_files), [], regorus_evaluator())
    assert report.total == 0 and not report.has_changes


def test_replay_input_restores_a_placeholder_justification():
    doc = {"purpose": {"code": "x", "justification_present": True, "justification_length": 12}}
    assert replay_input(doc)["purpose"] == {"code": "x", "justification": "x" * 12}
    assert replay_input({"purpose": {"justification_present": False}})["purpose"] == {"justification": None}
    untouched = {"purpose": None, "action": "read"}
    assert replay_input(untouched) == untouched


def test_opa_style_bundle_names_for_baseline(log, base_files):
    for entry in log:
        entry["bundles"] = {"revision": "r9"}
    assert simulate(pack_from_files(base_files), log, regorus_evaluator()).baseline_revisions == {"r9": 19}


def test_progress_callback(log, base_files):
    seen = []
    simulate(pack_from_files(base_files), log * 12, regorus_evaluator(), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(100, 228), (200, 228), (228, 228)]


def test_fail_closed_refusals_are_counted_apart(log, base_files):
    """An engine timeout logged as deny says nothing about the policy: never a "deny→permit" change."""
    refused = dict(log[0], decision_id="d-900")
    refused["result"] = {
        "effect": "deny",
        "risk": {
            "score": 100,
            "level": "critical",
            "factors": [{"name": "engine_timeout", "points": 100, "detail": "fail closed"}],
        },
        "reasons": ["engine_timeout"],
        "obligations": [],
        "permitted_fields": [],
    }
    token = dict(log[1], decision_id="d-901", result={"effect": "deny", "reasons": ["subject_token_expired"]})
    report = simulate(pack_from_files(base_files), [*log, refused, token], regorus_evaluator())
    assert (report.total, report.fail_closed, report.replayed, report.changed) == (21, 2, 19, 0)
