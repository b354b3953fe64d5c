# Export and bulk search of personal data: only configured roles (supervisor), only from the
# internal network, only from a managed and compliant device, and only with a stated purpose.
# The row cap is a max_rows obligation (see obligations.rego).
package ztcp.bulk

import rego.v1

import data.ztcp.common

cfg := common.config.bulk

applies if {
	common.is_employee
	common.personal
	input.action in cfg.actions
	not common.audit_dataset
}

purpose_given if {
	is_string(input.purpose.code)
	input.purpose.code != ""
}

deny contains "bulk_not_permitted" if {
	applies
	not common.has_any_role(cfg.roles)
}

deny contains "network_not_permitted" if {
	applies
	not input.context.network_zone in cfg.network_zones
}

deny contains "device_not_managed" if {
	applies
	not common.device_managed
}

deny contains "device_not_compliant" if {
	applies
	common.device_managed
	not common.device_compliant
}

deny contains "purpose_required" if {
	applies
	not purpose_given
}

grant contains "bulk_permitted" if {
	applies
	common.has_any_role(cfg.roles)
	input.context.network_zone in cfg.network_zones
	common.device_managed
	common.device_compliant
	purpose_given
}
