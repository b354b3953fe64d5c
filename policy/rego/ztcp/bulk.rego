# Export and bulk search of personal data: only configured roles (supervisor), only from the
# internal network, only from a managed and compliant device, and only with a stated purpose.
# The row cap is a max_rows obligation (see obligations.rego).
package ztcp.bulk

import rego.v1

cfg := data.ztcp.config.bulk

applies if {
	data.ztcp.common.is_employee
	data.ztcp.common.personal
	input.action in cfg.actions
	not data.ztcp.common.audit_dataset
}

purpose_given if {
	is_string(input.purpose.code)
	input.purpose.code != ""
}

# Helpers, negated below: `not f(input…)` and `not input.x in …` fail in OPA when the operand
# is missing, where regorus holds them (README, portability).
bulk_role if data.ztcp.common.has_any_role(cfg.roles)

zone_allowed if input.context.network_zone in cfg.network_zones

deny contains "bulk_not_permitted" if {
	applies
	not bulk_role
}

deny contains "network_not_permitted" if {
	applies
	not zone_allowed
}

deny contains "device_not_managed" if {
	applies
	not data.ztcp.common.device_managed
}

deny contains "device_not_compliant" if {
	applies
	data.ztcp.common.device_managed
	not data.ztcp.common.device_compliant
}

deny contains "purpose_required" if {
	applies
	not purpose_given
}

grant contains "bulk_permitted" if {
	applies
	bulk_role
	zone_allowed
	data.ztcp.common.device_managed
	data.ztcp.common.device_compliant
	purpose_given
}
