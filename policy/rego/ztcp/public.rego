# Public data (classification "public" after the register check): any known, authenticated
# subject may read or search it; no provenance record is required.
package ztcp.public

import rego.v1

applies if data.ztcp.common.classification == "public"

authenticated if {
	is_number(input.signals.auth_strength)
	input.signals.auth_strength >= 1
}

grant contains "public_data" if {
	applies
	input.subject.type in data.ztcp.common.known_subject_types
	input.action in data.ztcp.config.public.actions
	authenticated
}

deny contains "action_not_permitted" if {
	applies
	not input.action in data.ztcp.config.public.actions
}

deny contains "not_authenticated" if {
	applies
	not authenticated
}
