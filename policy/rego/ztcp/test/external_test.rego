package ztcp.external_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

# Minimum necessary: the agency asked for national_id, which its agreement does not cover.
test_agency_gets_intersection_with_agreement if {
	d := authz.decision with input as fx.agency with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["agreement_valid"]
	d.permitted_fields == ["address", "name"]
	{"type": "record_provenance"} in d.obligations
	d.risk.factors == []
}

test_agency_without_agreement_for_dataset if {
	inp := fx.patch(fx.agency, "resource", {"dataset": "medical_records", "fields": ["diagnosis"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["no_agreement"]
}

test_unknown_agency_has_no_agreement if {
	inp := fx.patch(fx.agency, "subject", {"id": "agency-unknown"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.reasons == ["no_agreement"]
}

test_agency_agreement_expired if {
	inp := fx.patch(fx.agency, "resource", {"dataset": "claims", "fields": ["claim_status"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["agreement_expired"]
}

# Expiry is compared against input.context.time, not the wall clock.
test_agreement_expiry_uses_input_time if {
	inp := fx.patch(fx.agency, "context", {"time": "2027-12-31T08:00:01+08:00"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.reasons == ["agreement_expired"]
	earlier := authz.decision with input as fx.patch(fx.agency, "context", {"time": "2027-12-31T07:59:59+08:00"})
		with data.bureau as fx.bureau
	earlier.effect == "permit"
}

test_agency_agreement_not_approved if {
	inp := fx.patch(fx.agency, "resource", {"dataset": "payments", "fields": ["payment_amount"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["agreement_not_approved"]
}

test_agency_legal_basis_mismatch if {
	inp := fx.patch(fx.agency, "purpose", {"legal_basis": "LIA-Art-10"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["legal_basis_mismatch"]
}

test_agency_legal_basis_required if {
	inp := fx.patch(fx.agency, "purpose", {"legal_basis": null})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["legal_basis_required"]
}

test_agency_outside_exchange_network if {
	inp := fx.patch(fx.agency, "context", {"network_zone": "internet"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	"network_not_permitted" in d.reasons
}

test_agency_needs_external_agency_role if {
	inp := fx.patch(fx.agency, "subject", {"roles": ["case_officer"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["role_not_permitted"]
}

test_agency_cannot_export if {
	d := authz.decision with input as fx.with_action(fx.agency, "export") with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["action_not_permitted"]
}

test_agency_only_uncovered_fields_denied if {
	inp := fx.patch(fx.agency, "resource", {"fields": ["national_id", "bank_account"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["no_permitted_fields"]
}

# An expired agreement next to a valid one: only the valid one's fields are released.
test_agency_fields_only_from_valid_agreements if {
	inp := fx.patch(
		fx.patch(fx.agency, "subject", {"id": "agency-labour"}),
		"purpose", {"legal_basis": "LSA-Art-7"},
	)
	d := authz.decision with input as fx.patch(inp, "resource", {"fields": ["name", "employer"]}) with data.bureau as fx.bureau
	d.effect == "permit"
	d.permitted_fields == ["name"]
}

# --- MyData ---

test_mydata_with_valid_consent_gets_consented_fields if {
	d := authz.decision with input as fx.mydata with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["consent_valid"]
	d.permitted_fields == ["insurance_type", "name"]
}

test_mydata_without_consent if {
	inp := fx.patch(fx.mydata, "purpose", {"consent_id": null})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["no_consent"]
}

test_mydata_unknown_consent if {
	inp := fx.patch(fx.mydata, "purpose", {"consent_id": "CNS-NOPE"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.reasons == ["no_consent"]
}

test_mydata_consent_of_another_party if {
	inp := fx.patch(fx.mydata, "subject", {"id": "mydata-bank-2"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["consent_party_mismatch"]
}

test_mydata_consent_for_another_citizen if {
	inp := fx.patch(fx.mydata, "resource", {"citizen_ref": fx.citizen_b})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["consent_citizen_mismatch"]
}

test_mydata_consent_for_another_dataset if {
	inp := fx.patch(fx.mydata, "resource", {"dataset": "claims", "fields": ["name"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["consent_dataset_mismatch"]
}

test_mydata_consent_expired if {
	inp := fx.patch(fx.mydata, "purpose", {"consent_id": "CNS-EXPIRED"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["consent_expired"]
}

test_mydata_consent_revoked if {
	inp := fx.patch(fx.mydata, "purpose", {"consent_id": "CNS-REVOKED"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["consent_revoked"]
}

# A malformed clock never makes an agreement or consent valid — and never raises.
test_malformed_time_fails_closed if {
	inp := fx.patch(fx.agency, "context", {"time": "next tuesday"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["agreement_expired"]
	m := authz.decision with input as fx.patch(fx.mydata, "context", {"time": null}) with data.bureau as fx.bureau
	m.reasons == ["consent_expired"]
}
