# Audit datasets (config.audit.datasets: provenance events, decision log, key events, alerts) hold
# citizen_ref and field names, never values. Only config.audit.roles read them — a role matrix
# entry with datasets ["*"] does not reach them. Auditors get no personal field values: a
# personal-dataset request by an auditor that no other role of theirs allows is denied with
# auditor_no_personal_values.
package ztcp.auditor

import rego.v1

applies if data.ztcp.common.is_employee

deny contains "audit_role_required" if {
	data.ztcp.common.is_employee
	data.ztcp.common.audit_dataset
	not audit_role
}

# A helper, so that a missing config section reads "no audit role" in OPA too (README, portability).
audit_role if data.ztcp.common.has_any_role(data.ztcp.config.audit.roles)

deny contains "auditor_no_personal_values" if {
	data.ztcp.common.is_employee
	data.ztcp.common.personal
	not data.ztcp.common.audit_dataset
	"auditor" in data.ztcp.common.roles
	not data.ztcp.roles.allowed
}
