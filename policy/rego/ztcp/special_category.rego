# Special-category data (medical, occupational-injury records: classification "special") needs a
# phishing-resistant login (FIDO2 or citizen certificate) and, for staff, a managed and compliant
# device. Weak authentication is a step-up (the user can fix it now); a bad device is a deny.
# Agencies and MyData parties are governed by their agreement or consent instead.
package ztcp.special_category

import rego.v1

cfg := data.ztcp.config.special_category

applies if {
	data.ztcp.common.special
	input.subject.type in {"employee", "citizen"}
}

strong_auth if input.subject.auth.method in cfg.auth_methods

device_rules if {
	applies
	input.subject.type in cfg.device_subject_types
}

step_up contains "weak_authentication" if {
	applies
	not strong_auth
}

step_up_methods contains object.get(cfg.step_up_method, input.subject.type, "fido2") if {
	applies
	not strong_auth
}

deny contains "device_not_managed" if {
	device_rules
	not data.ztcp.common.device_managed
}

deny contains "device_not_compliant" if {
	device_rules
	data.ztcp.common.device_managed
	not data.ztcp.common.device_compliant
}
