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

thresholds := data.ztcp.config.risk.thresholds

base_deny contains "unknown_subject_type" if not data.ztcp.common.known_subject_type

# Service accounts have no rule of their own yet: they fall to deny-by-default below.

# Each module's contribution, consulted only when the module applies (keeps evaluation cheap).
deny_reasons contains r if {
	data.ztcp.roles.applies
	some r in data.ztcp.roles.deny
}

deny_reasons contains r if {
	data.ztcp.need_to_know.applies
	some r in data.ztcp.need_to_know.deny
}

deny_reasons contains r if {
	data.ztcp.bulk.applies
	some r in data.ztcp.bulk.deny
}

deny_reasons contains r if {
	data.ztcp.special_category.applies
	some r in data.ztcp.special_category.deny
}

deny_reasons contains r if {
	data.ztcp.external.applies
	some r in data.ztcp.external.deny
}

deny_reasons contains r if {
	data.ztcp.disclosure.applies
	some r in data.ztcp.disclosure.deny
}

deny_reasons contains r if {
	data.ztcp.exchange.applies
	some r in data.ztcp.exchange.deny
}

deny_reasons contains r if {
	data.ztcp.citizen.applies
	some r in data.ztcp.citizen.deny
}

deny_reasons contains r if {
	data.ztcp.auditor.applies
	some r in data.ztcp.auditor.deny
}

deny_reasons contains r if {
	data.ztcp.break_glass.applies
	some r in data.ztcp.break_glass.deny
}

deny_reasons contains r if {
	data.ztcp.public.applies
	some r in data.ztcp.public.deny
}

deny_reasons contains r if some r in base_deny

deny_reasons contains r if some r in fields_deny

step_up_reasons contains r if {
	data.ztcp.need_to_know.applies
	some r in data.ztcp.need_to_know.step_up
}

step_up_reasons contains r if {
	data.ztcp.special_category.applies
	some r in data.ztcp.special_category.step_up
}

step_up_reasons contains r if {
	data.ztcp.citizen.applies
	some r in data.ztcp.citizen.step_up
}

step_up_methods contains m if {
	data.ztcp.need_to_know.applies
	some m in data.ztcp.need_to_know.step_up_methods
}

step_up_methods contains m if {
	data.ztcp.special_category.applies
	some m in data.ztcp.special_category.step_up_methods
}

step_up_methods contains m if {
	data.ztcp.citizen.applies
	some m in data.ztcp.citizen.step_up_methods
}

grants contains g if {
	data.ztcp.roles.applies
	some g in data.ztcp.roles.grant
}

grants contains g if {
	data.ztcp.need_to_know.applies
	some g in data.ztcp.need_to_know.grant
}

grants contains g if {
	data.ztcp.bulk.applies
	some g in data.ztcp.bulk.grant
}

grants contains g if {
	data.ztcp.external.applies
	some g in data.ztcp.external.grant
}

grants contains g if {
	data.ztcp.exchange.applies
	some g in data.ztcp.exchange.grant
}

grants contains g if {
	data.ztcp.citizen.applies
	some g in data.ztcp.citizen.grant
}

grants contains g if {
	data.ztcp.break_glass.applies
	some g in data.ztcp.break_glass.grant
}

grants contains g if {
	data.ztcp.public.applies
	some g in data.ztcp.public.grant
}

withheld contains f if {
	data.ztcp.roles.applies
	some f in data.ztcp.roles.withheld
}

withheld contains f if {
	data.ztcp.external.applies
	some f in data.ztcp.external.withheld
}

withheld contains f if {
	data.ztcp.disclosure.applies
	some f in data.ztcp.disclosure.withheld
}

withheld contains f if {
	data.ztcp.citizen.applies
	some f in data.ztcp.citizen.withheld
}

withheld contains f if some f in unregistered_fields

# Fields the dataset register does not list are never released (when the register lists fields).
registered_fields := data.ztcp.common.datasets[input.resource.dataset].fields

unregistered_fields contains f if {
	is_array(registered_fields)
	some f in data.ztcp.common.requested_fields
	not f in registered_fields
}

fields := {f | some f in data.ztcp.common.requested_fields; not f in withheld}

# Minimum necessary: asking only for fields one may not have is a deny, not an empty permit.
fields_deny contains "no_permitted_fields" if {
	count(grants) > 0
	count(data.ztcp.common.requested_fields) > 0
	count(fields) == 0
}

# --- effect -----------------------------------------------------------------------------------

# The definitions below exclude one another; they are chained with `else`, the likely outcome
# first, so evaluation stops at the one that holds instead of trying every definition (each tried
# definition costs about as much as a small rule).
rule_effect := "permit" if {
	count(deny_reasons) == 0
	count(grants) > 0
	count(step_up_reasons) == 0
} else := "deny" if {
	count(deny_reasons) > 0
} else := "deny" if {
	count(grants) == 0
} else := "step_up" if {
	count(deny_reasons) == 0
	count(grants) > 0
	count(step_up_reasons) > 0
}

risk_deny if data.ztcp.risk.score >= thresholds.deny

risk_step_up if {
	data.ztcp.risk.score >= thresholds.step_up
	not risk_deny
}

effect := "permit" if {
	rule_effect == "permit"
	not risk_deny
	not risk_step_up
} else := "deny" if {
	rule_effect == "deny"
} else := "deny" if {
	rule_effect != "deny"
	risk_deny
} else := "step_up" if {
	rule_effect == "step_up"
	not risk_deny
} else := "step_up" if {
	rule_effect == "permit"
	risk_step_up
}

# --- reasons ----------------------------------------------------------------------------------

reasons := sort(grants) if {
	effect == "permit"
} else := sort(deny_reasons) if {
	rule_effect == "deny"
	count(deny_reasons) > 0
} else := ["no_applicable_rule"] if {
	rule_effect == "deny"
	count(deny_reasons) == 0
} else := ["risk_too_high"] if {
	rule_effect != "deny"
	risk_deny
} else := sort(step_up_reasons | risk_reasons) if {
	effect == "step_up"
}

risk_reasons contains "risk_too_high" if risk_step_up

# --- obligations and fields -------------------------------------------------------------------

risk_step_up_methods contains data.ztcp.config.risk.step_up_method if {
	rule_effect == "permit"
	risk_step_up
}

permitted_fields := sort(fields) if {
	effect == "permit"
} else := [] if {
	effect != "permit"
}

decision_obligations := data.ztcp.obligations.for_permit(fields) if {
	effect == "permit"
} else := data.ztcp.obligations.for_step_up(step_up_methods | risk_step_up_methods) if {
	effect == "step_up"
} else := [] if {
	effect == "deny"
}

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
	"risk": {"score": data.ztcp.risk.score, "level": data.ztcp.risk.level, "factors": data.ztcp.risk.factors},
	"reasons": reasons,
	"obligations": decision_obligations,
	"permitted_fields": permitted_fields,
}
