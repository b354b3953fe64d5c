package ztcp.obligations_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

payment_fields := fx.patch(fx.officer, "resource", {"fields": ["name", "bank_account", "national_id"]})

test_reviewer_sees_bank_account_last4_and_partial_id if {
	d := authz.decision with input as fx.patch(payment_fields, "subject", {"roles": ["reviewer"]}) with data.bureau as fx.bureau
	d.effect == "permit"
	d.obligations == [
		{"type": "record_provenance"},
		{"type": "mask", "field": "bank_account", "style": "last4"},
		{"type": "mask", "field": "national_id", "style": "partial"},
	]
}

test_case_officer_exempt_from_masks if {
	d := authz.decision with input as payment_fields with data.bureau as fx.bureau
	d.effect == "permit"
	d.obligations == [{"type": "record_provenance"}]
}

test_supervisor_sees_full_national_id_but_masked_account if {
	inp := fx.patch(payment_fields, "subject", {"roles": ["supervisor"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	{"type": "mask", "field": "bank_account", "style": "last4"} in d.obligations
	not {"type": "mask", "field": "national_id", "style": "partial"} in d.obligations
}

test_call_center_role_scoped_masks if {
	inp := fx.patch(fx.staff(["call_center"]), "resource", {"fields": ["phone", "address"]})
	d := authz.decision with input as fx.patch(inp, "purpose", {"case_id": "C-1"}) with data.bureau as fx.bureau
	d.effect == "permit"
	{"type": "mask", "field": "phone", "style": "last3"} in d.obligations
	{"type": "mask", "field": "address", "style": "district"} in d.obligations
}

# Masks are only emitted for fields actually released.
test_no_mask_for_withheld_field if {
	inp := fx.patch(fx.agency, "resource", {"fields": ["name", "bank_account"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.permitted_fields == ["name"]
	not "mask" in fx.obligation_types(d)
}

test_dataset_scoped_mask_rule if {
	rules := [{"dataset": "claims", "field": "name", "style": "initials"}]
	d := authz.decision with input as fx.officer with data.bureau as fx.bureau
		with data.ztcp.config.masking.rules as rules
	not "mask" in fx.obligation_types(d)
	claims := fx.patch(fx.officer, "resource", {"dataset": "claims", "fields": ["name"]})
	c := authz.decision with input as claims with data.bureau as fx.bureau
		with data.ztcp.config.masking.rules as rules
	{"type": "mask", "field": "name", "style": "initials"} in c.obligations
}

test_subject_type_scoped_mask_rule if {
	rules := [{"dataset": "*", "field": "name", "style": "initials", "subject_types": ["mydata_party"]}]
	d := authz.decision with input as fx.mydata with data.bureau as fx.bureau
		with data.ztcp.config.masking.rules as rules
	{"type": "mask", "field": "name", "style": "initials"} in d.obligations
	o := authz.decision with input as fx.officer with data.bureau as fx.bureau
		with data.ztcp.config.masking.rules as rules
	not "mask" in fx.obligation_types(o)
}

test_no_obligations_on_deny if {
	inp := fx.patch(payment_fields, "purpose", {"case_id": "C-OTHER"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.obligations == []
}

test_every_personal_permit_records_provenance if {
	inputs := [fx.officer, fx.agency, fx.mydata, fx.citizen, fx.supervisor_export]
	every inp in inputs {
		d := authz.decision with input as inp with data.bureau as fx.bureau
		d.effect == "permit"
		{"type": "record_provenance"} in d.obligations
	}
}

test_obligation_order_is_stable if {
	inp := fx.patch(fx.patch(payment_fields, "subject", {"roles": ["reviewer"]}), "purpose", {
		"code": "emergency", "case_id": null, "break_glass": true,
		"justification": "Citizen collapsed at the counter; ambulance needs status.",
	})
	d := authz.decision with input as fx.with_action(inp, "read") with data.bureau as fx.bureau
	[o.type | some o in d.obligations] == ["record_provenance", "mask", "mask", "alert"]
}
