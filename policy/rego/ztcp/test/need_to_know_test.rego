package ztcp.need_to_know_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

test_not_assigned if {
	inp := fx.patch(fx.officer, "purpose", {"case_id": "C-OTHER"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["not_assigned"]
}

test_purpose_mismatch if {
	inp := fx.patch(fx.officer, "purpose", {"code": "marketing"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["purpose_mismatch"]
}

test_no_case_id if {
	inp := fx.patch(fx.officer, "purpose", {"case_id": null})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["no_case"]
}

# An unknown id gives the same answer as no id: reasons must not reveal which cases exist.
test_unknown_case_is_no_case if {
	inp := fx.patch(fx.officer, "purpose", {"case_id": "C-DOES-NOT-EXIST"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.reasons == ["no_case"]
}

test_case_closed if {
	inp := fx.patch(fx.officer, "purpose", {"case_id": "C-CLOSED"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["case_closed"]
}

test_case_sealed if {
	inp := fx.patch(fx.officer, "purpose", {"case_id": "C-SEALED"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["case_sealed"]
}

test_case_about_another_citizen if {
	inp := fx.patch(fx.officer, "resource", {"citizen_ref": fx.citizen_b})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["citizen_mismatch"]
}

test_search_needs_case_too if {
	inp := fx.patch(fx.with_action(fx.officer, "search"), "purpose", {"case_id": null})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["no_case"]
}

# config.need_to_know.role_outcomes: counter staff serving a walk-in citizen step up instead: a
# sign-in with FIDO2 older than config.step_up.max_age_s asks for a fresh one…
walk_in(age, method) := fx.patch(
	fx.patch(fx.staff(["counter_staff"]), "purpose", {"case_id": null}),
	"subject", {"auth": {"method": method, "mfa": true, "auth_time": 1795300000, "token_age_s": age}},
)

test_counter_staff_without_case_steps_up if {
	d := authz.decision with input as walk_in(900, "fido2") with data.bureau as fx.bureau
	d.effect == "step_up"
	d.reasons == ["no_case"]
	d.obligations == [{"type": "step_up", "method": "fido2", "max_age": 300}]
	d.permitted_fields == []
}

# … and a fresh one meets it: permitted, under the need_to_know_step_up grant (no login loop).
test_counter_staff_walk_in_after_fresh_fido2_is_permitted if {
	d := authz.decision with input as walk_in(60, "fido2") with data.bureau as fx.bureau
	d.effect == "permit"
	"need_to_know_step_up" in d.reasons
	count(d.permitted_fields) > 0
}

test_walk_in_step_up_needs_the_configured_method if {
	d := authz.decision with input as walk_in(10, "otp") with data.bureau as fx.bureau
	d.effect == "step_up"
	d.reasons == ["no_case"]
}

test_walk_in_freshness_window_is_configurable if {
	d := authz.decision with input as walk_in(60, "fido2") with data.bureau as fx.bureau
		with data.ztcp.config.step_up.max_age_s as 30
	d.effect == "step_up"
}

test_counter_staff_not_assigned_still_denied if {
	inp := fx.patch(fx.staff(["counter_staff"]), "purpose", {"case_id": "C-OTHER"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["not_assigned"]
}

test_global_outcome_configurable if {
	stale := {"method": "fido2", "mfa": true, "auth_time": 1795300000, "token_age_s": 900}
	inp := fx.patch(fx.patch(fx.officer, "purpose", {"code": "fraud_check"}), "subject", {"auth": stale})
	d := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.need_to_know.outcomes.purpose_mismatch as "step_up"
	d.effect == "step_up"
	d.reasons == ["purpose_mismatch"]
}

test_supervisor_reads_case_of_own_unit if {
	inp := fx.patch(fx.patch(fx.staff(["supervisor"]), "subject", {"id": "emp-0900"}), "purpose", {"case_id": "C-OTHER"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["unit_case"]
}

test_supervisor_of_other_unit_not_assigned if {
	inp := fx.patch(
		fx.patch(fx.staff(["supervisor"]), "subject", {"id": "emp-0900", "org_unit": "kaohsiung-01"}),
		"purpose", {"case_id": "C-OTHER"},
	)
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["not_assigned"]
}

test_case_officer_of_same_unit_is_not_a_unit_role if {
	inp := fx.patch(fx.patch(fx.officer, "subject", {"id": "emp-0900"}), "purpose", {"case_id": "C-OTHER"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.reasons == ["not_assigned"]
}
