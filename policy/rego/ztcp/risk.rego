# Trust inference: every signal the PDP computed becomes a named risk factor worth the points
# officers set in data.ztcp.config.risk.weights (0 disables a factor). The score is the clamped
# sum (0–100); config.risk.levels names it; authz.rego maps it through config.risk.thresholds.
# config.risk.subject_factors limits which factors count for a subject type (a citizen's phone is
# never "managed"); a type not listed there gets every factor.
package ztcp.risk

import rego.v1

import data.ztcp.break_glass
import data.ztcp.common

cfg := common.config.risk

limits := cfg.limits

sig := input.signals

# Display and evaluation order: the contract's list.
factor_order := [
	"weak_auth", "no_mfa", "stale_token", "recent_denies", "failed_step_ups",
	"unmanaged_device", "noncompliant_device", "new_device", "network_internet", "network_vpn",
	"off_hours", "holiday", "impossible_travel", "high_request_rate", "breadth_spike",
	"first_dataset_access", "protected_citizen", "self_record", "break_glass",
]

applicable(name) if not cfg.subject_factors[input.subject.type]

applicable(name) if name in cfg.subject_factors[input.subject.type]

points(name) := object.get(cfg.weights, name, 0)

factors := [{"name": name, "points": points(name), "detail": detail[name]} |
	some name in factor_order
	detail[name]
	applicable(name)
	points(name) != 0
]

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
	some m in cfg.levels
	m <= score
}

level_floor := m if {
	some m in reached
	every other in reached {
		other <= m
	}
}

level_names := sort([n | some n; cfg.levels[n] == level_floor])

level := level_names[0]

# --- one detail per fired factor (each key defined by exactly one rule body) -------------------

auth_strength := common.num(sig.auth_strength)

detail["weak_auth"] := sprintf("auth strength %v below %v", [auth_strength, limits.min_auth_strength]) if {
	auth_strength < limits.min_auth_strength
}

# FIDO2 / citizen certificate (strength 3) are multi-factor by themselves.
detail["no_mfa"] := "no second factor" if {
	not common.is_true(input.subject.auth.mfa)
	auth_strength < 3
}

detail["stale_token"] := sprintf("token age %vs over %vs", [common.num(sig.token_age_s), limits.max_token_age_s]) if {
	common.num(sig.token_age_s) > limits.max_token_age_s
}

detail["recent_denies"] := sprintf("%v denies in the last hour", [common.num(sig.recent_denies_1h)]) if {
	common.num(sig.recent_denies_1h) >= limits.recent_denies_1h
}

detail["failed_step_ups"] := sprintf("%v failed step-ups in the last hour", [common.num(sig.failed_step_ups_1h)]) if {
	common.num(sig.failed_step_ups_1h) >= limits.failed_step_ups_1h
}

detail["unmanaged_device"] := "device not managed" if not common.device_managed

posture_failures contains "not compliant" if not common.device_compliant

posture_failures contains "baseline" if input.device.posture.baseline_ok == false

posture_failures contains "edr" if input.device.posture.edr_running == false

posture_failures contains "disk_encryption" if input.device.posture.disk_encrypted == false

posture_failures contains "patch_age" if common.num(input.device.posture.patch_age_days) > limits.max_patch_age_days

# Counted only for managed devices: an unmanaged device is already the bigger factor.
detail["noncompliant_device"] := concat("", ["device posture failed: ", concat(", ", sort(posture_failures))]) if {
	common.device_managed
	count(posture_failures) > 0
}

detail["new_device"] := "first use of this device by the subject" if common.is_true(sig.device_first_seen)

detail["network_internet"] := "request from the internet" if input.context.network_zone == "internet"

detail["network_vpn"] := "request over VPN" if input.context.network_zone == "vpn"

detail["off_hours"] := sprintf("outside office hours (local hour %v)", [sig.local_hour]) if common.is_true(sig.off_hours)

detail["holiday"] := "public holiday" if common.is_true(sig.holiday)

detail["impossible_travel"] := sprintf("travel speed %v km/h since previous request", [common.num(sig.travel_speed_kmh)]) if {
	impossible_travel
}

impossible_travel if common.is_true(sig.impossible_travel)

impossible_travel if common.num(sig.travel_speed_kmh) > limits.max_travel_speed_kmh

detail["high_request_rate"] := sprintf("%v requests in the last minute", [common.num(sig.request_rate_1m)]) if {
	common.num(sig.request_rate_1m) > limits.request_rate_1m
}

detail["breadth_spike"] := sprintf("%v citizens in 10 min, %v in 1 h", [
	common.num(sig.distinct_citizens_10m),
	common.num(sig.distinct_citizens_1h),
]) if {
	breadth_spike
}

breadth_spike if common.num(sig.distinct_citizens_10m) > limits.distinct_citizens_10m

breadth_spike if common.num(sig.distinct_citizens_1h) > limits.distinct_citizens_1h

detail["first_dataset_access"] := "first access to this dataset" if common.is_true(sig.first_dataset_access)

detail["protected_citizen"] := "record of a protected citizen" if protected_citizen

# Large registers should be objects ({citizen_ref: true}) for O(1) lookup; arrays also work.
protected_citizen if {
	ref := input.resource.citizen_ref
	is_string(ref)
	is_object(common.protected_citizens)
	common.protected_citizens[ref]
}

protected_citizen if {
	ref := input.resource.citizen_ref
	is_string(ref)
	is_array(common.protected_citizens)
	ref in common.protected_citizens
}

# A staff member reading their own record (conflict of interest). For citizens it is the norm.
detail["self_record"] := "staff member's own record" if {
	common.is_employee
	common.is_true(sig.self_record)
}

detail["break_glass"] := "break-the-glass access" if break_glass.active
