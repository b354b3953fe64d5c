package ztcp.authz_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

# The issue's first scenario: FIDO2 + MFA, managed compliant device, internal network, 10:00.
test_officer_assigned_case_permit if {
	d := authz.decision with input as fx.officer with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["assigned_case"]
	{"type": "record_provenance"} in d.obligations
	d.permitted_fields == ["address", "name"]
	d.risk.score == 0
	d.risk.level == "low"
	d.risk.factors == []
}

# The issue's second scenario: same officer, unmanaged new device, internet, 02:00.
test_officer_unmanaged_internet_night_step_up if {
	d := authz.decision with input as fx.officer_night with data.bureau as fx.bureau
	d.effect == "step_up"
	d.reasons == ["risk_too_high"]
	fx.factor_names(d) == {"unmanaged_device", "new_device", "network_internet", "off_hours"}
	d.risk.score == 60
	d.risk.level == "high"
	d.obligations == [{"type": "step_up", "method": "fido2", "max_age": 300}]
	d.permitted_fields == []
}

test_factors_carry_points_and_detail if {
	d := authz.decision with input as fx.officer_night with data.bureau as fx.bureau
	some f in d.risk.factors
	f.name == "unmanaged_device"
	f.points == 25
	f.detail == "device not managed"
}

test_unknown_subject_type_denied if {
	inp := fx.patch(fx.officer, "subject", {"type": "robot"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	"unknown_subject_type" in d.reasons
	d.obligations == []
}

# Service accounts have no rule yet: deny by default, still with a reason.
test_service_account_denied_by_default if {
	inp := fx.patch(fx.officer, "subject", {"type": "service", "roles": ["batch"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["no_applicable_rule"]
}

test_empty_bureau_register_fails_closed if {
	d := authz.decision with input as fx.officer with data.bureau as {}
	d.effect == "deny"
	d.reasons == ["no_case"]
	d.permitted_fields == []
}

test_unregistered_field_withheld if {
	inp := fx.patch(fx.officer, "resource", {"fields": ["name", "salary"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.permitted_fields == ["name"]
}

test_only_unpermitted_fields_denied if {
	inp := fx.patch(fx.officer, "resource", {"fields": ["salary", "religion"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["no_permitted_fields"]
}

# A broken config (here: no risk section) must not yield an undefined decision.
test_broken_config_denies if {
	d := authz.decision with input as fx.officer with data.bureau as fx.bureau with data.ztcp.config.risk as {}
	d.effect == "deny"
	d.reasons == ["policy_incomplete"]
}

test_public_data_for_any_subject if {
	inp := fx.patch(fx.agency, "resource", {"dataset": "office_locations", "citizen_ref": null, "fields": ["address"], "classification": "public"})
	d := authz.decision with input as fx.with_action(inp, "read") with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["public_data"]
	not {"type": "record_provenance"} in d.obligations
}

test_public_data_needs_authentication if {
	inp := fx.patch(
		fx.patch(fx.citizen, "resource", {"dataset": "office_locations", "citizen_ref": null, "fields": ["address"], "classification": "public"}),
		"signals", {"auth_strength": 0},
	)
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	"not_authenticated" in d.reasons
}

test_deny_reasons_sorted_and_complete if {
	inp := fx.patch(fx.officer, "purpose", {"case_id": "C-OTHER", "code": "fraud_check"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["not_assigned", "purpose_mismatch"]
}

test_public_data_cannot_be_exported if {
	inp := fx.patch(fx.officer, "resource", {
		"dataset": "office_locations", "citizen_ref": null, "fields": ["address"], "classification": "public",
	})
	d := authz.decision with input as fx.with_action(inp, "export") with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["action_not_permitted"]
}
