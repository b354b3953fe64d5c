# Audit datasets (config.audit.datasets: provenance events, decision log, key events, alerts) hold
# citizen_ref and field names, never values. Only config.audit.roles read them — a role matrix
# entry with datasets ["*"] does not reach them. Auditors get no personal field values: a
# personal-dataset request by an auditor that no other role of theirs allows is denied with
# auditor_no_personal_values.
package ztcp.auditor

import rego.v1

import data.ztcp.common
import data.ztcp.roles

deny contains "audit_role_required" if {
	common.is_employee
	common.audit_dataset
	not common.has_any_role(common.config.audit.roles)
}

deny contains "auditor_no_personal_values" if {
	common.is_employee
	common.personal
	not common.audit_dataset
	"auditor" in common.roles
	not roles.allowed
}
