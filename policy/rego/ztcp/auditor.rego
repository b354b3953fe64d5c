# Auditors (and security officers) read the audit datasets — provenance events, decision log,
# key events, alerts — which by construction hold citizen_ref and field names, never values.
# They get no personal field values: a request for a personal dataset by a subject whose only
# data roles are audit roles is denied with auditor_no_personal_values. The role matrix grants
# the audit datasets themselves (classification internal in the register).
package ztcp.auditor

import rego.v1

import data.ztcp.common
import data.ztcp.roles

audit_roles := {"auditor", "security_officer"}

deny contains "auditor_no_personal_values" if {
	common.is_employee
	common.personal
	not common.audit_dataset
	common.has_any_role(audit_roles)
	not roles.allowed
}
