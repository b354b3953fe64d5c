"""Every rule's fixtures: `match` cases raise an alert of that rule, `nomatch` cases do not."""

from __future__ import annotations

import pytest

from siem_rules import RulePack
from siem_rules.fixtures import load_fixture, run_fixtures
from siem_rules.rulepack import LEVELS

PACK = RulePack()


def test_pack_has_at_least_15_rules_with_metadata() -> None:
    sigma_rules = [r for r in PACK.rules if not r.analytic]
    assert len(sigma_rules) >= 15
    for r in PACK.rules:
        assert r.id and r.title and r.description and r.tags and r.falsepositives, r.name
        assert r.level in LEVELS
        assert set(r.logsource) <= {"decision", "provenance", "keymgmt", "policy", "alert"}, r.name


def test_analytics_are_few() -> None:
    assert 1 <= sum(1 for r in PACK.rules if r.analytic) <= 3


@pytest.mark.parametrize("rule", PACK.rules, ids=lambda r: r.name)
def test_rule_fixtures(rule) -> None:
    fixture = load_fixture(rule)
    assert fixture["match"] and fixture["nomatch"]
    results = run_fixtures(PACK, [rule])
    failed = [f"[{r.expectation}] {r.name}: {r.detail}" for r in results if not r.passed]
    assert not failed, failed


def test_every_scenario_of_the_issue_has_a_rule() -> None:
    names = {r.name for r in PACK.rules}
    types = {r.name: r.rule_type for r in PACK.rules}
    for needed in [
        "self_record_read",
        "related_record_read_without_case",
        "protected_record_access",
        "access_without_case_or_purpose",
        "bulk_reads_by_actor",
        "breadth_spike_distinct_citizens",
        "curiosity_swarm",
        "off_hours_access",
        "break_glass_without_justification",
        "break_glass_repeated",
        "deny_then_permit_probing",
        "fraud_broker_read_then_account_change",
        "shared_bank_account",
        "risky_access_special_category",
        "mass_export_or_disclosure",
        "key_decrypt_spike",
        "key_decrypt_refused_burst",
        "first_seen_key_principal",
        "key_lifecycle_outside_change_window",
        "emergency_policy_publish",
        "ledger_verification_failure",
    ]:
        assert needed in names
    assert types["bulk_reads_by_actor"] == "event_count"
    assert types["breadth_spike_distinct_citizens"] == "value_count"
    assert types["deny_then_permit_probing"] == "temporal_ordered"
