# Facts every rule module shares: the subject's roles, the effective classification of the
# resource, bureau registers with safe defaults, and RFC 3339 time handling.
package ztcp.common

import rego.v1

config := data.ztcp.config

# Bureau registers default to empty so the pack evaluates without operational data
# (every rule that needs a register then fails closed).
default cases := {}

cases := data.bureau.cases

default agreements := {}

agreements := data.bureau.agreements

default consents := {}

consents := data.bureau.consents

default datasets := {}

datasets := data.bureau.datasets

default protected_citizens := []

protected_citizens := data.bureau.protected_citizens

roles := {r | some r in input.subject.roles}

has_any_role(wanted) if {
	some r in wanted
	r in roles
}

is_employee if input.subject.type == "employee"

known_subject_types := {"employee", "citizen", "agency", "mydata_party", "service"}

# Classification: the stricter of what the caller declares and what the dataset register says.
# An unknown or missing label counts as "special" (fail closed).
class_rank := {"public": 0, "internal": 1, "personal": 2, "special": 3}

class_names := ["public", "internal", "personal", "special"]

default declared_rank := 3

declared_rank := object.get(class_rank, input.resource.classification, 3)

default registry_rank := -1

registry_rank := object.get(class_rank, datasets[input.resource.dataset].classification, 3)

# No max(): regopy 1.5 orders numbers as strings in min/max/sort (see README, engine notes).
classification := class_names[declared_rank] if declared_rank >= registry_rank

classification := class_names[registry_rank] if registry_rank > declared_rank

rank := class_rank[classification]

personal if rank >= 2

special if classification == "special"

# Audit datasets (provenance, decision log, …) carry citizen_ref and field names, never values.
audit_dataset if input.resource.dataset in config.audit.datasets

device_managed if input.device.managed == true

device_compliant if input.device.compliant == true

# Numeric signals are compared only after is_number(): engines order null against numbers
# differently (regopy 1.5 says null > 3600), and a null signal must never fire or clear a rule.

# Time: the PDP supplies input.context.time (deterministic, replayable). A string that is not
# RFC 3339 is never passed to time.parse_rfc3339_ns (engines differ: some raise, some go undefined).
rfc3339_re := `^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`

parse_time(s) := time.parse_rfc3339_ns(utc_offset(s)) if {
	is_string(s)
	regex.match(rfc3339_re, s)
}

# "Z" is written as "+00:00": same instant, and regopy 1.5 cannot parse the "Z" form.
utc_offset(s) := concat("", [substring(s, 0, count(s) - 1), "+00:00"]) if endswith(upper(s), "Z")

utc_offset(s) := s if not endswith(upper(s), "Z")

now_ns := parse_time(input.context.time)

# Valid strictly before `expires`; an unparseable expiry or clock never counts as unexpired.
unexpired(expires) if parse_time(expires) > now_ns

requested_fields := {f | some f in input.resource.fields}
