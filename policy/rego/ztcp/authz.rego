# The decision the PDP asks for: data.ztcp.authz.decision (see README.md for the contract).
#
# Each rule module contributes to four sets: deny (reason codes), step_up (reason codes a
# stronger login or a confirmation can clear), grant (why the request is allowed by the rules)
# and withheld (requested fields the caller may not get). Combining, in order:
#   1. any deny reason, or no grant at all → deny (deny by default: "no_applicable_rule");
#   2. step_up reasons → step_up; otherwise permit;
#   3. risk: a permit becomes step_up at score >= thresholds.step_up and deny at >= thresholds.deny
#      (a step_up becomes deny at >= thresholds.deny), with reason risk_too_high.
package ztcp.authz

import rego.v1

import data.ztcp.auditor
import data.ztcp.break_glass
import data.ztcp.bulk
import data.ztcp.citizen
import data.ztcp.common
import data.ztcp.external
import data.ztcp.need_to_know
import data.ztcp.obligations
import data.ztcp.public
import data.ztcp.risk
import data.ztcp.roles
import data.ztcp.special_category

thresholds := common.config.risk.thresholds

base_deny contains "unknown_subject_type" if not input.subject.type in common.known_subject_types

# Service accounts have no rule of their own yet: they fall to deny-by-default below.

deny_reasons := (((((((((roles.deny | need_to_know.deny) | bulk.deny) | special_category.deny) | external.deny) |
	citizen.deny) | auditor.deny) | break_glass.deny) | public.deny) | base_deny) | fields_deny

step_up_reasons := (need_to_know.step_up | special_category.step_up) | citizen.step_up

step_up_methods := (need_to_know.step_up_methods | special_category.step_up_methods) | citizen.step_up_methods

grants := (((((roles.grant | need_to_know.grant) | bulk.grant) | external.grant) | citizen.grant) |
	break_glass.grant) | public.grant

withheld := ((roles.withheld | external.withheld) | citizen.withheld) | unregistered_fields

# Fields the dataset register does not list are never released (when the register lists fields).
unregistered_fields contains f if {
	registered := common.datasets[input.resource.dataset].fields
	some f in common.requested_fields
	not f in registered
}

fields := {f | some f in common.requested_fields; not f in withheld}

# Minimum necessary: asking only for fields one may not have is a deny, not an empty permit.
fields_deny contains "no_permitted_fields" if {
	count(grants) > 0
	count(common.requested_fields) > 0
	count(fields) == 0
}

# --- effect -----------------------------------------------------------------------------------

rule_effect := "deny" if count(deny_reasons) > 0

rule_effect := "deny" if count(grants) == 0

rule_effect := "step_up" if {
	count(deny_reasons) == 0
	count(grants) > 0
	count(step_up_reasons) > 0
}

rule_effect := "permit" if {
	count(deny_reasons) == 0
	count(grants) > 0
	count(step_up_reasons) == 0
}

risk_deny if risk.score >= thresholds.deny

risk_step_up if {
	risk.score >= thresholds.step_up
	not risk_deny
}

effect := "deny" if rule_effect == "deny"

effect := "deny" if {
	rule_effect != "deny"
	risk_deny
}

effect := "step_up" if {
	rule_effect == "step_up"
	not risk_deny
}

effect := "step_up" if {
	rule_effect == "permit"
	risk_step_up
}

effect := "permit" if {
	rule_effect == "permit"
	not risk_deny
	not risk_step_up
}

# --- reasons ----------------------------------------------------------------------------------

reasons := sort(deny_reasons) if {
	rule_effect == "deny"
	count(deny_reasons) > 0
}

reasons := ["no_applicable_rule"] if {
	rule_effect == "deny"
	count(deny_reasons) == 0
}

reasons := ["risk_too_high"] if {
	rule_effect != "deny"
	risk_deny
}

reasons := sort(step_up_reasons | {r | risk_step_up; r := "risk_too_high"}) if {
	effect == "step_up"
}

reasons := sort(grants) if effect == "permit"

# --- obligations and fields -------------------------------------------------------------------

risk_step_up_methods contains common.config.risk.step_up_method if {
	rule_effect == "permit"
	risk_step_up
}

permitted_fields := sort(fields) if effect == "permit"

permitted_fields := [] if effect != "permit"

decision_obligations := obligations.for_permit(fields) if effect == "permit"

decision_obligations := obligations.for_step_up(step_up_methods | risk_step_up_methods) if effect == "step_up"

decision_obligations := [] if effect == "deny"

# Always defined: if any part is undefined (broken config, malformed input) the answer is deny.
default decision := {
	"effect": "deny",
	"risk": {"score": 100, "level": "critical", "factors": []},
	"reasons": ["policy_incomplete"],
	"obligations": [],
	"permitted_fields": [],
}

decision := {
	"effect": effect,
	"risk": {"score": risk.score, "level": risk.level, "factors": risk.factors},
	"reasons": reasons,
	"obligations": decision_obligations,
	"permitted_fields": permitted_fields,
}
