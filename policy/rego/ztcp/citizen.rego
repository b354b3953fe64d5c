# Citizens (subject.type "citizen", through the portal) read only their own record, with strong
# authentication.
#
# "Own record" is defined as: resource.citizen_ref is a non-empty string AND
#   - if the subject carries a citizen_ref (subject.citizen_ref, set by the PDP from the verified
#     token), it equals resource.citizen_ref — and then signals.self_record is ignored;
#   - otherwise signals.self_record is true (the PDP compared the token's citizen_ref).
# Strong authentication: signals.auth_strength >= config.citizen.min_auth_strength (OTP and up)
# or a method in config.citizen.strong_methods (citizen certificate); weaker → step_up.
package ztcp.citizen

import rego.v1

cfg := data.ztcp.config.citizen

applies if {
	input.subject.type == "citizen"
	data.ztcp.common.classification != "public"
}

has_subject_ref if is_string(input.subject.citizen_ref)

resource_ref_given if {
	is_string(input.resource.citizen_ref)
	input.resource.citizen_ref != ""
}

own_record if {
	resource_ref_given
	has_subject_ref
	input.subject.citizen_ref == input.resource.citizen_ref
}

own_record if {
	resource_ref_given
	not has_subject_ref
	input.signals.self_record == true
}

strong_auth if {
	is_number(input.signals.auth_strength)
	input.signals.auth_strength >= cfg.min_auth_strength
}

strong_auth if input.subject.auth.method in cfg.strong_methods

deny contains "role_not_permitted" if {
	applies
	not "citizen" in data.ztcp.common.roles
}

# Negated as a helper: `not input.action in …` fails in OPA when the action is missing.
action_allowed if input.action in cfg.actions

deny contains "action_not_permitted" if {
	applies
	not action_allowed
}

deny contains "not_own_record" if {
	applies
	not own_record
}

step_up contains "weak_authentication" if {
	applies
	not strong_auth
}

step_up_methods contains cfg.step_up_method if {
	applies
	not strong_auth
}

grant contains "own_record" if {
	applies
	own_record
	"citizen" in data.ztcp.common.roles
	action_allowed
}

withheld contains f if {
	applies
	some f in data.ztcp.common.requested_fields
	f in cfg.withheld_fields
}
