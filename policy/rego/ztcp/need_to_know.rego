# Need-to-know: bureau staff touch one citizen's personal data only inside an open case that is
# assigned to them (or, for unit roles such as supervisor, that belongs to their org unit), about
# that citizen, for one of the case's purposes. Each failed check is a reason code whose outcome
# (deny or step_up) comes from data.ztcp.config.need_to_know, overridable per role.
package ztcp.need_to_know

import rego.v1

cfg := data.ztcp.config.need_to_know

applies if {
	data.ztcp.common.is_employee
	data.ztcp.common.personal
	input.action in cfg.actions
	not data.ztcp.common.audit_dataset
	not data.ztcp.break_glass.requested
	not data.ztcp.exchange.batch
}

case_id := input.purpose.case_id if {
	is_string(input.purpose.case_id)
	input.purpose.case_id != ""
}

# An unknown case id is reported like a missing one: the reason must not reveal which ids exist.
case := data.ztcp.common.cases[case_id]

assigned if input.subject.id in case.assignees

unit_case if {
	data.ztcp.common.has_any_role(cfg.unit_roles)
	is_string(case.org_unit)
	case.org_unit == input.subject.org_unit
}

failed contains "no_case" if not case

failed contains "case_closed" if case.status != "open"

failed contains "case_sealed" if case.sealed == true

failed contains "not_assigned" if {
	case
	not assigned
	not unit_case
}

failed contains "citizen_mismatch" if {
	case
	not same_citizen
}

same_citizen if {
	is_string(input.resource.citizen_ref)
	case.citizen_ref == input.resource.citizen_ref
}

failed contains "purpose_mismatch" if {
	case
	not purpose_listed
}

# Negated as a helper: `not input.purpose.code in …` fails in OPA when the code is missing.
purpose_listed if input.purpose.code in case.purposes

# step_up if any of the subject's roles says so for this reason, else the global outcome, else deny.
outcome(reason) := "step_up" if {
	some r in data.ztcp.common.roles
	cfg.role_outcomes[r][reason] == "step_up"
}

outcome(reason) := "step_up" if {
	not role_step_up(reason)
	object.get(cfg.outcomes, reason, "deny") == "step_up"
}

outcome(reason) := "deny" if {
	not role_step_up(reason)
	object.get(cfg.outcomes, reason, "deny") != "step_up"
}

role_step_up(reason) if {
	some r in data.ztcp.common.roles
	cfg.role_outcomes[r][reason] == "step_up"
}

deny contains reason if {
	applies
	some reason in failed
	outcome(reason) == "deny"
}

step_up contains reason if {
	applies
	some reason in failed
	outcome(reason) == "step_up"
	not stepped_up
}

# The step-up is met: signed in with the required method within the last step_up.max_age_s seconds
# (a counter clerk who has just touched their FIDO2 key for this walk-in is permitted, and the
# decision names the need_to_know_step_up grant, instead of being asked again in a loop).
stepped_up if {
	input.subject.auth.method == cfg.step_up_method
	is_number(input.subject.auth.token_age_s)
	input.subject.auth.token_age_s <= data.ztcp.config.step_up.max_age_s
}

step_up_methods contains cfg.step_up_method if count(step_up) > 0

grant contains "assigned_case" if {
	applies
	count(failed) == 0
	assigned
}

grant contains "unit_case" if {
	applies
	count(failed) == 0
	not assigned
	unit_case
}

# Every failure is step-up-able: permit once the subject steps up (effect step_up until then).
grant contains "need_to_know_step_up" if {
	applies
	count(failed) > 0
	count(deny) == 0
}
