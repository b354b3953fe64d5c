# Obligations the PEP must fulfil with a permit: record provenance for personal data, mask
# fields (config.masking.rules by dataset, role and subject type), cap rows (config.max_rows per
# action and role), raise alerts (break-glass, protected citizens). A step_up carries the step-up
# methods the rules asked for. Obligations come out in a fixed order so decisions are stable.
package ztcp.obligations

import rego.v1

# Settings are read at their own paths (data.ztcp.config.max_rows[…], …), never through
# data.ztcp.config as a whole: OPA merges a test's `with data.ztcp.config.max_rows.search as {…}`
# into a parent document a rule reads, regorus replaces it (README, portability).

# --- masking ----------------------------------------------------------------------------------

rule_matches_subject(rule) if {
	roles_ok(rule)
	not exempt(rule)
	types_ok(rule)
}

roles_ok(rule) if not rule.roles

roles_ok(rule) if data.ztcp.common.has_any_role(rule.roles)

exempt(rule) if data.ztcp.common.has_any_role(rule.exempt_roles)

types_ok(rule) if not rule.subject_types

types_ok(rule) if input.subject.type in rule.subject_types

masks(permitted) := sort([{"type": "mask", "field": rule.field, "style": rule.style} |
	some rule in data.ztcp.config.masking.rules
	rule.dataset in {"*", input.resource.dataset}
	rule.field in permitted
	rule_matches_subject(rule)
])

# --- max_rows ---------------------------------------------------------------------------------

action_limits := data.ztcp.config.max_rows[input.action]

role_limits := [action_limits[r] |
	some r in data.ztcp.common.roles
	action_limits[r]
]

# The tightest limit among the subject's roles (no min(): see common.rego).
row_limit := n if {
	some n in role_limits
	every other in role_limits {
		n <= other
	}
}

row_limit := action_limits.default if count(role_limits) == 0

max_rows := [{"type": "max_rows", "limit": row_limit}] if row_limit

default max_rows := []

# --- alerts -----------------------------------------------------------------------------------

break_glass_alert := [
	{"type": "alert", "severity": data.ztcp.config.break_glass.alert_severity, "rule": "break_glass"} |
	data.ztcp.break_glass.active
]

protected_citizen_alert := [
	{"type": "alert", "severity": data.ztcp.config.alerts.protected_citizen, "rule": "protected_citizen"} |
	data.ztcp.risk.protected_citizen
]

alert_list := array.concat(break_glass_alert, protected_citizen_alert)

provenance := [{"type": "record_provenance"} | data.ztcp.common.personal]

# The obligations of a permit over `permitted` fields.
for_permit(permitted) := array.concat(
	array.concat(provenance, masks(permitted)),
	array.concat(max_rows, alert_list),
)

# max_age: a sign-in with the method older than this does not count (RFC 9470), so a PEP can ask
# for a fresh one instead of refusing someone who signed in that way hours ago.
for_step_up(methods) := [
	{"type": "step_up", "method": m, "max_age": data.ztcp.config.step_up.max_age_s} |
	some m in sort(methods)
]
