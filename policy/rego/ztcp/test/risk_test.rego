package ztcp.risk_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

test_weights_come_from_config if {
	d := authz.decision with input as fx.officer_night with data.bureau as fx.bureau
		with data.ztcp.config.risk.weights.unmanaged_device as 33
	some f in d.risk.factors
	f.name == "unmanaged_device"
	f.points == 33
	d.risk.score == 68
}

test_zero_weight_disables_factor if {
	d := authz.decision with input as fx.officer_night with data.bureau as fx.bureau
		with data.ztcp.config.risk.weights.off_hours as 0
	not "off_hours" in fx.factor_names(d)
	d.risk.score == 50
}

test_score_clamped_to_100 if {
	inp := fx.patch(fx.officer_night, "signals", {
		"impossible_travel": true, "distinct_citizens_10m": 500, "request_rate_1m": 400,
		"recent_denies_1h": 9, "failed_step_ups_1h": 4,
	})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.risk.score == 100
	d.risk.level == "critical"
	d.effect == "deny"
	d.reasons == ["risk_too_high"]
}

test_score_clamped_to_0 if {
	inp := fx.patch(fx.officer, "signals", {"off_hours": true})
	d := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.risk.weights.off_hours as -50
	d.risk.score == 0
	d.effect == "permit"
}

# 39 points permits, exactly 40 (the step_up threshold) steps up.
test_step_up_threshold_is_inclusive if {
	inp := fx.patch(fx.officer, "signals", {"off_hours": true})
	below := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.risk.weights.off_hours as 39
	below.effect == "permit"
	at := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.risk.weights.off_hours as 40
	at.effect == "step_up"
	at.reasons == ["risk_too_high"]
}

test_deny_threshold_is_inclusive if {
	inp := fx.patch(fx.officer, "signals", {"off_hours": true})
	below := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.risk.weights.off_hours as 69
	below.effect == "step_up"
	at := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.risk.weights.off_hours as 70
	at.effect == "deny"
	at.reasons == ["risk_too_high"]
	at.permitted_fields == []
	at.obligations == []
}

test_thresholds_tunable if {
	d := authz.decision with input as fx.officer_night with data.bureau as fx.bureau
		with data.ztcp.config.risk.thresholds as {"step_up": 20, "deny": 55}
	d.effect == "deny"
}

test_level_bands if {
	low := authz.decision with input as fx.patch(fx.officer, "signals", {"off_hours": true}) with data.bureau as fx.bureau
	low.risk.level == "low"
	medium := authz.decision with input as fx.patch(fx.officer, "device", {"managed": false}) with data.bureau as fx.bureau
	medium.risk.score == 25
	medium.risk.level == "medium"
}

test_password_without_mfa if {
	inp := fx.patch(
		fx.patch(fx.officer, "subject", {"auth": {"method": "password", "mfa": false, "auth_time": 1795300000, "token_age_s": 120}}),
		"signals", {"auth_strength": 1},
	)
	d := authz.decision with input as inp with data.bureau as fx.bureau
	fx.factor_names(d) == {"weak_auth", "no_mfa"}
	d.risk.score == 35
	d.effect == "permit"
}

test_noncompliant_posture_detail if {
	inp := fx.patch(fx.officer, "device", {
		"compliant": false,
		"posture": {"baseline_ok": true, "edr_running": false, "disk_encrypted": true, "patch_age_days": 45},
	})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	some f in d.risk.factors
	f.name == "noncompliant_device"
	f.detail == "device posture failed: edr, not compliant, patch_age"
	not "unmanaged_device" in fx.factor_names(d)
}

test_impossible_travel_from_speed if {
	inp := fx.patch(fx.officer, "signals", {"travel_speed_kmh": 4200})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	fx.factor_names(d) == {"impossible_travel"}
	d.effect == "step_up"
}

test_location_unknown_is_a_factor_outside_the_internal_network if {
	inp := fx.patch(fx.patch(fx.officer, "signals", {"location_unknown": true}), "context", {"network_zone": "vpn"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	fx.factor_names(d) == {"location_unknown", "network_vpn"}
	d.risk.score == 10
}

test_location_unknown_does_not_count_on_the_internal_network if {
	inp := fx.patch(fx.officer, "signals", {"location_unknown": true})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	fx.factor_names(d) == set()
}

test_breadth_spike if {
	inp := fx.patch(fx.officer, "signals", {"distinct_citizens_1h": 150})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	some f in d.risk.factors
	f.name == "breadth_spike"
	f.detail == "2 citizens in 10 min, 150 in 1 h"
}

test_limits_tunable if {
	inp := fx.patch(fx.officer, "signals", {"request_rate_1m": 30})
	quiet := authz.decision with input as inp with data.bureau as fx.bureau
	quiet.risk.factors == []
	busy := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.risk.limits.request_rate_1m as 10
	fx.factor_names(busy) == {"high_request_rate"}
}

test_protected_citizen_factor_and_alert if {
	inp := fx.patch(fx.patch(fx.officer, "resource", {"citizen_ref": fx.citizen_vip}), "purpose", {"case_id": "C-VIP"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	fx.factor_names(d) == {"protected_citizen"}
	{"type": "alert", "severity": "medium", "rule": "protected_citizen"} in d.obligations
}

test_protected_citizens_as_object if {
	inp := fx.patch(fx.officer, "signals", {})
	d := authz.decision with input as inp with data.bureau as fx.bureau
		with data.bureau.protected_citizens as {fx.citizen_a: true}
	fx.factor_names(d) == {"protected_citizen"}
}

test_staff_self_record_factor if {
	inp := fx.patch(fx.officer, "signals", {"self_record": true})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	fx.factor_names(d) == {"self_record"}
	d.risk.score == 30
}

# A citizen's own unmanaged phone on the internet is normal: device/network factors do not apply.
test_citizen_not_scored_for_device_or_network if {
	inp := fx.patch(fx.citizen, "signals", {"device_first_seen": true, "off_hours": true})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.risk.factors == []
	d.effect == "permit"
}

test_null_signals_do_not_fire if {
	inp := fx.patch(fx.officer, "signals", {"token_age_s": null, "request_rate_1m": null, "travel_speed_kmh": null})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.risk.factors == []
	d.effect == "permit"
}

test_stale_token_and_recent_denies if {
	inp := fx.patch(fx.officer, "signals", {"token_age_s": 7200, "recent_denies_1h": 3, "failed_step_ups_1h": 1})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	fx.factor_names(d) == {"stale_token", "recent_denies", "failed_step_ups"}
	d.risk.score == 45
	d.effect == "step_up"
}

test_first_dataset_access_factor if {
	inp := fx.patch(fx.officer, "signals", {"first_dataset_access": true})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.risk.factors == [{"name": "first_dataset_access", "points": 5, "detail": "first access to this dataset"}]
	d.effect == "permit"
}

# The sort keys that put fired factors in order are factor_order itself, entry by entry.
test_factor_rank_tables_follow_the_factor_order if {
	count(data.ztcp.risk.factor_rank) == count(data.ztcp.risk.factor_order)
	count(data.ztcp.risk.factor_at) == count(data.ztcp.risk.factor_order)
	[data.ztcp.risk.factor_at[k] | some k in sort([r | some n; r := data.ztcp.risk.factor_rank[n]])] == data.ztcp.risk.factor_order
	every name in data.ztcp.risk.factor_order {
		data.ztcp.risk.factor_at[data.ztcp.risk.factor_rank[name]] == name
	}
}
