# Public data (classification "public" after the register check): any known, authenticated
# subject may read or search it; no provenance record is required.
package ztcp.public

import rego.v1

applies if data.ztcp.common.classification == "public"

authenticated if {
	is_number(input.signals.auth_strength)
	input.signals.auth_strength >= 1
}

# Negated as a helper: `not input.action in …` fails in OPA when the action is missing.
action_allowed if input.action in data.ztcp.config.public.actions

grant contains "public_data" if {
	applies
	data.ztcp.common.known_subject_type
	action_allowed
	authenticated
}

deny contains "action_not_permitted" if {
	applies
	not action_allowed
}

deny contains "not_authenticated" if {
	applies
	not authenticated
}
