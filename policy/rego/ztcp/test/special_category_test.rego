package ztcp.special_category_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

medical := fx.patch(fx.patch(fx.officer, "resource", {
	"type": "medical_record", "dataset": "medical_records", "fields": ["diagnosis", "treatment"],
	"classification": "special",
}), "purpose", {"case_id": "C-MED", "code": "injury_claim"})

otp_login := {"method": "otp", "mfa": true, "auth_time": 1795300000, "token_age_s": 120}

test_special_with_fido2_on_managed_compliant_device if {
	d := authz.decision with input as medical with data.bureau as fx.bureau
	d.effect == "permit"
	d.permitted_fields == ["diagnosis", "treatment"]
	{"type": "record_provenance"} in d.obligations
}

test_special_with_otp_steps_up_to_fido2 if {
	inp := fx.patch(fx.patch(medical, "subject", {"auth": otp_login}), "signals", {"auth_strength": 2})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "step_up"
	d.reasons == ["weak_authentication"]
	d.obligations == [{"type": "step_up", "method": "fido2", "max_age": 300}]
	d.permitted_fields == []
}

# The same OTP login is enough for ordinary personal data.
test_otp_is_enough_for_personal_data if {
	inp := fx.patch(fx.patch(fx.officer, "subject", {"auth": otp_login}), "signals", {"auth_strength": 2})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
}

test_special_on_unmanaged_device_denied if {
	inp := fx.patch(medical, "device", {"managed": false, "compliant": false})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["device_not_managed"]
}

test_special_on_noncompliant_device_denied if {
	inp := fx.patch(medical, "device", {"compliant": false})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["device_not_compliant"]
}

# Weak auth and a bad device together: the device deny wins over the step-up.
test_special_device_deny_beats_step_up if {
	inp := fx.patch(fx.patch(medical, "subject", {"auth": otp_login}), "device", {"managed": false})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["device_not_managed"]
}

test_citizen_reads_own_medical_record_with_certificate if {
	inp := fx.patch(fx.citizen, "resource", {"dataset": "medical_records", "fields": ["diagnosis"], "classification": "special"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["own_record"]
}

test_citizen_special_with_otp_steps_up_to_certificate if {
	inp := fx.patch(
		fx.patch(fx.citizen, "resource", {"dataset": "medical_records", "fields": ["diagnosis"], "classification": "special"}),
		"subject", {"auth": otp_login},
	)
	d := authz.decision with input as fx.patch(inp, "signals", {"auth_strength": 2}) with data.bureau as fx.bureau
	d.effect == "step_up"
	d.obligations == [{"type": "step_up", "method": "citizen_cert", "max_age": 300}]
}
