package ztcp.citizen_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

test_citizen_reads_own_record if {
	d := authz.decision with input as fx.citizen with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["own_record"]
	d.permitted_fields == ["address", "insurance_type", "name"]
	{"type": "record_provenance"} in d.obligations
}

test_citizen_cannot_read_other_record if {
	inp := fx.patch(fx.citizen, "signals", {"self_record": false})
	d := authz.decision with input as fx.patch(inp, "resource", {"citizen_ref": fx.citizen_b}) with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["not_own_record"]
}

# subject.citizen_ref, when present, is authoritative over the self_record signal.
test_subject_citizen_ref_is_authoritative if {
	inp := fx.patch(fx.citizen, "subject", {"citizen_ref": fx.citizen_b})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["not_own_record"]
	ok := authz.decision with input as fx.patch(fx.patch(fx.citizen, "subject", {"citizen_ref": fx.citizen_a}), "signals", {"self_record": false})
		with data.bureau as fx.bureau
	ok.effect == "permit"
}

test_citizen_record_without_citizen_ref_denied if {
	inp := fx.patch(fx.citizen, "resource", {"citizen_ref": ""})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.reasons == ["not_own_record"]
}

test_citizen_password_steps_up_to_certificate if {
	inp := fx.patch(
		fx.patch(fx.citizen, "subject", {"auth": {"method": "password", "mfa": false, "auth_time": 1795300000, "token_age_s": 60}}),
		"signals", {"auth_strength": 1},
	)
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "step_up"
	d.reasons == ["weak_authentication"]
	d.obligations == [{"type": "step_up", "method": "citizen_cert", "max_age": 300}]
}

test_citizen_otp_is_strong_enough if {
	inp := fx.patch(
		fx.patch(fx.citizen, "subject", {"auth": {"method": "otp", "mfa": true, "auth_time": 1795300000, "token_age_s": 60}}),
		"signals", {"auth_strength": 2},
	)
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
}

test_citizen_cannot_update if {
	d := authz.decision with input as fx.with_action(fx.citizen, "update") with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["action_not_permitted"]
}

test_citizen_does_not_see_internal_notes if {
	inp := fx.patch(fx.citizen, "resource", {"fields": ["name", "investigation_notes"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.permitted_fields == ["name"]
}

test_citizen_subject_needs_citizen_role if {
	inp := fx.patch(fx.citizen, "subject", {"roles": []})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["role_not_permitted"]
}
