package ztcp.roles_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

test_it_admin_cannot_read_personal_data if {
	d := authz.decision with input as fx.staff(["it_admin"]) with data.bureau as fx.bureau
	d.effect == "deny"
	"dataset_not_permitted" in d.reasons
	d.permitted_fields == []
}

test_it_admin_reads_internal_dataset if {
	inp := fx.patch(fx.staff(["it_admin"]), "resource", {
		"dataset": "system_inventory", "citizen_ref": null, "fields": ["host"], "classification": "internal",
	})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["role_permits"]
	not {"type": "record_provenance"} in d.obligations
}

test_reviewer_cannot_update if {
	inp := fx.with_action(fx.staff(["reviewer"]), "update")
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["action_not_permitted"]
}

test_unknown_role_denied if {
	d := authz.decision with input as fx.staff(["janitor"]) with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["role_not_permitted"]
}

test_counter_staff_no_special_category if {
	inp := fx.patch(fx.patch(fx.staff(["counter_staff"]), "resource", {
		"dataset": "medical_records", "fields": ["diagnosis"], "classification": "special",
	}), "purpose", {"case_id": "C-MED", "code": "injury_claim"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	"classification_not_permitted" in d.reasons
}

# The register's label wins over a weaker one declared by the calling system.
test_classification_is_the_stricter_label if {
	inp := fx.patch(fx.patch(fx.staff(["counter_staff"]), "resource", {
		"dataset": "medical_records", "fields": ["diagnosis"], "classification": "internal",
	}), "purpose", {"case_id": "C-MED", "code": "injury_claim"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	"classification_not_permitted" in d.reasons
}

test_unknown_classification_is_special if {
	inp := fx.patch(fx.staff(["counter_staff"]), "resource", {"dataset": "unregistered", "classification": "whatever"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	"classification_not_permitted" in d.reasons
}

# call_center sees only its allow-listed fields (minimum necessary), never e.g. employer.
test_call_center_field_allowlist if {
	inp := fx.patch(fx.staff(["call_center"]), "resource", {"fields": ["name", "employer", "insurance_type"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.permitted_fields == ["insurance_type", "name"]
}

test_call_center_dataset_scope if {
	inp := fx.patch(fx.staff(["call_center"]), "resource", {"dataset": "system_inventory", "classification": "internal"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["dataset_not_permitted"]
}

test_any_allowing_role_suffices if {
	inp := fx.with_action(fx.staff(["reviewer", "case_officer"]), "update")
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
}
