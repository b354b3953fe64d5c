# Trust inference: every signal the PDP computed becomes a named risk factor worth the points
# officers set in data.ztcp.config.risk.weights (0 disables a factor). The score is the clamped
# sum (0–100); config.risk.levels names it; authz.rego maps it through config.risk.thresholds.
# config.risk.subject_factors limits which factors count for a subject type (a citizen's phone is
# never "managed"); a type not listed there gets every factor.
package ztcp.risk

import rego.v1

# Each setting is read at its own path, never through data.ztcp.config.risk as a whole: a test's
# `with data.ztcp.config.risk.thresholds as {…}` replaces that object in regorus but is merged into
# it in OPA when a rule reads a parent path (README, portability).
limits := data.ztcp.config.risk.limits

weights := data.ztcp.config.risk.weights

levels := data.ztcp.config.risk.levels

subject_factors := data.ztcp.config.risk.subject_factors

# Display and evaluation order: the contract's list.
factor_order := [
	"weak_auth", "no_mfa", "stale_token", "recent_denies", "failed_step_ups",
	"unmanaged_device", "noncompliant_device", "new_device", "network_internet", "network_vpn",
	"off_hours", "holiday", "impossible_travel", "location_unknown", "high_request_rate", "breadth_spike",
	"first_dataset_access", "protected_citizen", "self_record", "break_glass",
]

# name -> detail of each fired factor: ordering them is then one lookup per name, not a scan of
# every fired factor for every name (a quarter of a decision's evaluation time before).
fired_detail := {f.name: f.detail | some f in fired}

allowed_names := {n | some n in subject_factors[input.subject.type]}

# Each factor's place in factor_order as two-digit text, and back: the few factors that fired are
# put in order by sorting their keys (strings: no sort over numbers, see common.rego), instead of
# walking all twenty names for every decision. tests/policy checks both tables against factor_order.
factor_rank := {"weak_auth": "00", "no_mfa": "01", "stale_token": "02", "recent_denies": "03", "failed_step_ups": "04", "unmanaged_device": "05", "noncompliant_device": "06", "new_device": "07", "network_internet": "08", "network_vpn": "09", "off_hours": "10", "holiday": "11", "impossible_travel": "12", "location_unknown": "13", "high_request_rate": "14", "breadth_spike": "15", "first_dataset_access": "16", "protected_citizen": "17", "self_record": "18", "break_glass": "19"}

factor_at := {"00": "weak_auth", "01": "no_mfa", "02": "stale_token", "03": "recent_denies", "04": "failed_step_ups", "05": "unmanaged_device", "06": "noncompliant_device", "07": "new_device", "08": "network_internet", "09": "network_vpn", "10": "off_hours", "11": "holiday", "12": "impossible_travel", "13": "location_unknown", "14": "high_request_rate", "15": "breadth_spike", "16": "first_dataset_access", "17": "protected_citizen", "18": "self_record", "19": "break_glass"}

fired_ranks := sort([k |
	some name
	fired_detail[name]
	k := factor_rank[name]
])

factors := [{"name": name, "points": p, "detail": fired_detail[name]} |
	some k in fired_ranks
	name := factor_at[k]
	p := object.get(weights, name, 0)
	p != 0
	applicable_name(name)
]

# A subject type not listed (or missing) is scored on every factor: negating the helper keeps that
# true in OPA too, where `not subject_factors[input.subject.type]` fails on a missing type.
applicable_name(name) if not factors_limited

factors_limited if subject_factors[input.subject.type]

applicable_name(name) if allowed_names[name]

raw_score := sum([f.points | some f in factors])

# Clamp and band with comparisons, not min()/max(): regopy 1.5 orders numbers as strings there.
score := 100 if raw_score > 100

score := 0 if raw_score < 0

score := raw_score if {
	raw_score >= 0
	raw_score <= 100
}

# The band with the highest floor not above the score.
reached contains m if {
	some m in levels
	m <= score
}

level_floor := m if {
	some m in reached
	every other in reached {
		other <= m
	}
}

level_names := sort([n | some n; levels[n] == level_floor])

level := level_names[0]

# --- fired factors: {"name", "detail"}, one rule body per name ---------------------------------

# A missing or non-numeric strength counts as 0 (no authentication).
default auth_strength := 0

auth_strength := input.signals.auth_strength if is_number(input.signals.auth_strength)

fired contains {"name": "weak_auth", "detail": d} if {
	auth_strength < limits.min_auth_strength
	d := sprintf("auth strength %v below %v", [auth_strength, limits.min_auth_strength])
}

# FIDO2 / citizen certificate (strength 3) are multi-factor by themselves.
fired contains {"name": "no_mfa", "detail": "no second factor"} if {
	not input.subject.auth.mfa == true
	auth_strength < 3
}

fired contains {"name": "stale_token", "detail": d} if {
	is_number(input.signals.token_age_s)
	input.signals.token_age_s > limits.max_token_age_s
	d := sprintf("token age %vs over %vs", [input.signals.token_age_s, limits.max_token_age_s])
}

fired contains {"name": "recent_denies", "detail": d} if {
	is_number(input.signals.recent_denies_1h)
	input.signals.recent_denies_1h >= limits.recent_denies_1h
	d := sprintf("%v denies in the last hour", [input.signals.recent_denies_1h])
}

fired contains {"name": "failed_step_ups", "detail": d} if {
	is_number(input.signals.failed_step_ups_1h)
	input.signals.failed_step_ups_1h >= limits.failed_step_ups_1h
	d := sprintf("%v failed step-ups in the last hour", [input.signals.failed_step_ups_1h])
}

fired contains {"name": "unmanaged_device", "detail": "device not managed"} if not data.ztcp.common.device_managed

posture_failures contains "not compliant" if not data.ztcp.common.device_compliant

posture_failures contains "baseline" if input.device.posture.baseline_ok == false

posture_failures contains "edr" if input.device.posture.edr_running == false

posture_failures contains "disk_encryption" if input.device.posture.disk_encrypted == false

posture_failures contains "patch_age" if {
	is_number(input.device.posture.patch_age_days)
	input.device.posture.patch_age_days > limits.max_patch_age_days
}

# Counted only for managed devices: an unmanaged device is already the bigger factor.
fired contains {"name": "noncompliant_device", "detail": d} if {
	data.ztcp.common.device_managed
	count(posture_failures) > 0
	d := concat("", ["device posture failed: ", concat(", ", sort(posture_failures))])
}

fired contains {"name": "new_device", "detail": "first use of this device by the subject"} if {
	input.signals.device_first_seen == true
}

fired contains {"name": "network_internet", "detail": "request from the internet"} if {
	input.context.network_zone == "internet"
}

fired contains {"name": "network_vpn", "detail": "request over VPN"} if input.context.network_zone == "vpn"

fired contains {"name": "off_hours", "detail": d} if {
	input.signals.off_hours == true
	d := sprintf("outside office hours (local hour %v)", [object.get(input.signals, "local_hour", null)])
}

fired contains {"name": "holiday", "detail": "public holiday"} if input.signals.holiday == true

fired contains {"name": "impossible_travel", "detail": d} if {
	impossible_travel
	# object.get: a missing speed must not drop the factor with its detail (fail closed).
	d := sprintf("travel speed %v km/h since previous request", [object.get(input.signals, "travel_speed_kmh", null)])
}

impossible_travel if input.signals.impossible_travel == true

# No trusted location (no site for the client's network, no X-Geo from a trusted proxy): impossible
# travel cannot be checked, so the missing location is itself a factor, never a skipped check.
# From the bureau's internal network (a configured range, or the trusted proxy's word) the network
# is the location; from anywhere else the gap counts.
fired contains {"name": "location_unknown", "detail": "no trusted location: travel cannot be checked"} if {
	input.signals.location_unknown == true
	not internal_network
}

internal_network if input.context.network_zone == "internal"

impossible_travel if {
	is_number(input.signals.travel_speed_kmh)
	input.signals.travel_speed_kmh > limits.max_travel_speed_kmh
}

fired contains {"name": "high_request_rate", "detail": d} if {
	is_number(input.signals.request_rate_1m)
	input.signals.request_rate_1m > limits.request_rate_1m
	d := sprintf("%v requests in the last minute", [input.signals.request_rate_1m])
}

fired contains {"name": "breadth_spike", "detail": d} if {
	breadth_spike
	d := sprintf("%v citizens in 10 min, %v in 1 h", [
		object.get(input.signals, "distinct_citizens_10m", null),
		object.get(input.signals, "distinct_citizens_1h", null),
	])
}

breadth_spike if {
	is_number(input.signals.distinct_citizens_10m)
	input.signals.distinct_citizens_10m > limits.distinct_citizens_10m
}

breadth_spike if {
	is_number(input.signals.distinct_citizens_1h)
	input.signals.distinct_citizens_1h > limits.distinct_citizens_1h
}

fired contains {"name": "first_dataset_access", "detail": "first access to this dataset"} if {
	input.signals.first_dataset_access == true
}

fired contains {"name": "protected_citizen", "detail": "record of a protected citizen"} if protected_citizen

# Large registers should be objects ({citizen_ref: true}) for O(1) lookup; arrays also work.
protected_citizen if {
	is_string(input.resource.citizen_ref)
	is_object(data.ztcp.common.protected_citizens)
	data.ztcp.common.protected_citizens[input.resource.citizen_ref]
}

protected_citizen if {
	is_string(input.resource.citizen_ref)
	is_array(data.ztcp.common.protected_citizens)
	input.resource.citizen_ref in data.ztcp.common.protected_citizens
}

# A staff member reading their own record (conflict of interest). For citizens it is the norm.
fired contains {"name": "self_record", "detail": "staff member's own record"} if {
	data.ztcp.common.is_employee
	input.signals.self_record == true
}

fired contains {"name": "break_glass", "detail": "break-the-glass access"} if data.ztcp.break_glass.active
