package ztcp.exchange_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

# One decision for a whole batch to agency-tax under DSA-1: no citizen, no case.
batch := object.union(
	fx.patch(
		fx.patch(
			fx.patch(fx.with_action(fx.staff(["exchange_officer"]), "disclose"), "resource",
				{"type": "batch", "citizen_ref": null, "record_id": null, "fields": ["name", "address", "insurance_type"]}),
			"purpose", {"case_id": null, "code": "agency_exchange", "legal_basis": "TCA-Art-30"},
		),
		"context", {"network_zone": "internal", "channel": "exchange"},
	),
	{"recipient": {"type": "agency", "id": "agency-tax"}},
)

decide(inp) := d if {
	d := authz.decision with input as inp with data.bureau as fx.bureau
}

test_batch_under_a_valid_agreement_is_permitted_without_a_case if {
	d := decide(batch)
	d.effect == "permit"
	d.reasons == ["exchange_batch_permitted"]
	d.permitted_fields == ["address", "insurance_type", "name"]
}

test_fields_outside_the_agreement_are_withheld if {
	d := decide(fx.patch(batch, "resource", {"fields": ["name", "national_id", "bank_account"]}))
	d.effect == "permit"
	d.permitted_fields == ["name"]
}

test_only_fields_outside_the_agreement_is_a_deny if {
	d := decide(fx.patch(batch, "resource", {"fields": ["bank_account"]}))
	d.effect == "deny"
	d.reasons == ["no_permitted_fields"]
}

test_suspended_agreement_is_refused if {
	bureau := json.patch(fx.bureau, [{"op": "replace", "path": "/agreements/agency-tax/0/status", "value": "suspended"}])
	d := authz.decision with input as batch with data.bureau as bureau
	d.effect == "deny"
	"agreement_not_approved" in d.reasons
}

test_expired_agreement_is_refused if {
	bureau := json.patch(fx.bureau, [{"op": "replace", "path": "/agreements/agency-tax/0/expires", "value": "2026-01-01T00:00:00Z"}])
	d := authz.decision with input as batch with data.bureau as bureau
	d.effect == "deny"
	"agreement_expired" in d.reasons
}

test_agency_without_agreement_is_refused if {
	d := decide(object.union(batch, {"recipient": {"type": "agency", "id": "agency-nobody"}}))
	d.effect == "deny"
	"recipient_no_agreement" in d.reasons
}

test_a_case_officer_cannot_run_a_batch if {
	d := decide(fx.patch(batch, "subject", {"roles": ["case_officer"]}))
	d.effect == "deny"
	"exchange_role_required" in d.reasons
}

test_batch_only_from_the_internal_network if {
	d := decide(fx.patch(batch, "context", {"network_zone": "vpn"}))
	d.effect == "deny"
	"network_not_permitted" in d.reasons
}

test_batch_only_from_a_managed_compliant_device if {
	d1 := decide(fx.patch(batch, "device", {"managed": false}))
	d1.effect == "deny"
	"device_not_managed" in d1.reasons
	d2 := decide(fx.patch(batch, "device", {"compliant": false}))
	d2.effect == "deny"
	"device_not_compliant" in d2.reasons
}

test_batch_needs_a_purpose if {
	d := decide(fx.patch(batch, "purpose", {"code": null}))
	d.effect == "deny"
	"purpose_required" in d.reasons
}

test_batch_to_a_citizen_is_refused if {
	d := decide(object.union(batch, {"recipient": {"type": "mydata", "id": "mydata-bank-1"}}))
	d.effect == "deny"
	"batch_recipient_must_be_agency" in d.reasons
}

# A one-record disclosure is still need-to-know's: the batch exemption is for resource.type batch only.
test_one_record_disclosure_still_needs_a_case if {
	inp := fx.patch(batch, "resource", {"type": "insured_person", "citizen_ref": fx.citizen_a, "record_id": "r-1"})
	d := decide(inp)
	d.effect == "deny"
	"no_case" in d.reasons
}
