# Facts every rule module shares: the subject's roles, the effective classification of the
# resource, bureau registers with safe defaults, and RFC 3339 time handling.
#
# Portability (README "Writing Rego for this pack"): `not` stands only before a rule name, a plain
# reference or an `==` between plain references. OPA evaluates the operands of a call, `in` or
# comparison before the `not`, so `not input.x in S` fails in OPA when input.x is missing and
# holds in regorus; the positive test goes into a helper rule (known_subject_type, in_force, …)
# and the caller negates the helper.
package ztcp.common

import rego.v1

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

# Only an array is iterated: regorus' interpreter raises on `some r in "a string"`, its RVM and
# OPA iterate nothing, so a string here would split the engines (error vs deny).
roles := {r | is_array(input.subject.roles); some r in input.subject.roles}

has_any_role(wanted) if {
	some r in wanted
	r in roles
}

is_employee if input.subject.type == "employee"

known_subject_types := {"employee", "citizen", "agency", "mydata_party", "service"}

known_subject_type if input.subject.type in known_subject_types

# A legal basis is a string; callers negate this helper, not is_string(input.…) (see above).
legal_basis_given if is_string(input.purpose.legal_basis)

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
audit_dataset if input.resource.dataset in data.ztcp.config.audit.datasets

device_managed if input.device.managed == true

device_compliant if input.device.compliant == true

# Numeric signals are compared only after is_number(): engines order null against numbers
# differently (regopy 1.5 says null > 3600), and a null signal must never fire or clear a rule.

# Time: the PDP supplies input.context.time (deterministic, replayable). Only a time every engine
# parses to the same instant reaches time.parse_rfc3339_ns; anything else is "no time" (never
# unexpired), never an error. Measured differences this pattern excludes: a lower-case "t" or "z"
# (regorus accepts, OPA raises), second 60 (regorus accepts), offset hour 24 or minute 60 (OPA
# accepts, regorus raises), day 30 of February and other impossible dates (OPA raises, regorus'
# RVM goes undefined, its interpreter raises), years outside int64 nanoseconds, more than 9
# fraction digits, and non-ASCII digits (`\d` is Unicode in regorus, ASCII in OPA: so [0-9]).
# Years 1900–2199 only (every such instant fits in int64 nanoseconds, 1678–2262); 29 February
# in leap years only (2000 is one, 1900 and 2100 are not). One literal, so `ztcp policy validate`
# can check that what reaches time.parse_rfc3339_ns is strict.
rfc3339_re := `^((19|20|21)[0-9]{2}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|((19|20|21)(0[48]|[2468][048]|[13579][26])|2000)-02-29)T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`

parse_time(s) := time.parse_rfc3339_ns(utc_offset(s)) if {
	is_string(s)
	regex.match(rfc3339_re, s)
}

# "Z" is written as "+00:00": same instant, and regopy 1.5 cannot parse the "Z" form.
utc_offset(s) := concat("", [substring(s, 0, count(s) - 1), "+00:00"]) if endswith(s, "Z")

utc_offset(s) := s if not endswith(s, "Z")

now_ns := parse_time(input.context.time)

# Valid strictly before `expires`; an unparseable expiry or clock never counts as unexpired.
unexpired(expires) if parse_time(expires) > now_ns

# A register entry (agreement, consent) whose `expires` is unexpired; callers write
# `not in_force(a)`, never `not unexpired(a.expires)`: a missing `expires` must read "expired" in
# OPA too (see the portability note at the top).
in_force(entry) if unexpired(entry.expires)

requested_fields := {f | is_array(input.resource.fields); some f in input.resource.fields}
