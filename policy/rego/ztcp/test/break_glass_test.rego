package ztcp.break_glass_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

justification := "Citizen collapsed at the counter; ambulance crew needs insurance status now."

emergency := fx.patch(fx.officer, "purpose", {
	"code": "emergency", "case_id": null, "break_glass": true, "justification": justification,
})

test_break_glass_permits_with_high_alert if {
	d := authz.decision with input as emergency with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["break_glass"]
	{"type": "alert", "severity": "high", "rule": "break_glass"} in d.obligations
	{"type": "record_provenance"} in d.obligations
	fx.factor_names(d) == {"break_glass"}
	d.risk.score == 20
}

test_break_glass_short_justification_denied if {
	inp := fx.patch(emergency, "purpose", {"justification": "   urgent, trust me    "})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["break_glass_justification_required"]
	d.obligations == []
}

test_break_glass_missing_justification_denied if {
	inp := fx.patch(emergency, "purpose", {"justification": null})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.reasons == ["break_glass_justification_required"]
}

test_break_glass_role_not_allowed if {
	inp := fx.patch(emergency, "subject", {"roles": ["counter_staff"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["break_glass_not_allowed"]
}

test_break_glass_not_for_citizens if {
	inp := fx.patch(fx.citizen, "purpose", {"break_glass": true, "justification": justification})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	"break_glass_not_allowed" in d.reasons
}

test_break_glass_read_only if {
	d := authz.decision with input as fx.with_action(emergency, "update") with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["break_glass_action_not_allowed"]
}

# Break-glass waives need-to-know only: special-category device rules still hold.
test_break_glass_keeps_special_category_rules if {
	inp := fx.patch(
		fx.patch(emergency, "resource", {"dataset": "medical_records", "fields": ["diagnosis"], "classification": "special"}),
		"device", {"managed": false},
	)
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["device_not_managed"]
}

# Risk still applies: break-glass from a risky context is stepped up.
test_break_glass_risk_still_counts if {
	inp := fx.patch(emergency, "signals", {"off_hours": true, "device_first_seen": true})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.risk.score == 40
	d.effect == "step_up"
	d.reasons == ["risk_too_high"]
}

test_break_glass_min_length_configurable if {
	inp := fx.patch(emergency, "purpose", {"justification": "ambulance at counter"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.break_glass.min_justification_length as 40
	d.reasons == ["break_glass_justification_required"]
}
