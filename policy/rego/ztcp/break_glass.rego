# Break-the-glass: a staff member in an emergency may read a citizen's personal data without a
# case, if their role allows it and they write a justification. It waives need-to-know only (role
# matrix, special-category and risk rules still apply) and always raises a high alert.
package ztcp.break_glass

import rego.v1

cfg := data.ztcp.config.break_glass

requested if input.purpose.break_glass == true

applies if requested

justification_ok if {
	is_string(input.purpose.justification)
	count(trim_space(input.purpose.justification)) >= cfg.min_justification_length
}

role_ok if {
	data.ztcp.common.is_employee
	data.ztcp.common.has_any_role(cfg.roles)
}

# Negated as a helper: `not input.action in …` fails in OPA when the action is missing.
action_allowed if input.action in cfg.actions

active if {
	requested
	role_ok
	action_allowed
	justification_ok
}

deny contains "break_glass_not_allowed" if {
	requested
	not role_ok
}

deny contains "break_glass_action_not_allowed" if {
	requested
	role_ok
	not action_allowed
}

deny contains "break_glass_justification_required" if {
	requested
	role_ok
	not justification_ok
}

grant contains "break_glass" if {
	active
	data.ztcp.common.personal
}
