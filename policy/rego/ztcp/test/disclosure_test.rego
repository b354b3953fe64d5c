package ztcp.disclosure_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

# The case officer passes citizen A's record on; need-to-know holds (case C-1), so each test is
# about the recipient alone.
disclosing(recipient, purpose_changes, fields) := object.union(
	fx.patch(fx.patch(fx.with_action(fx.officer, "disclose"), "purpose", purpose_changes), "resource", {"fields": fields}),
	{"recipient": recipient},
)

to_tax := disclosing({"type": "agency", "id": "agency-tax"}, {"legal_basis": "TCA-Art-30"}, ["name", "address"])

decide(inp) := d if {
	d := authz.decision with input as inp with data.bureau as fx.bureau
}

test_agency_with_a_valid_agreement_is_permitted if {
	d := decide(to_tax)
	d.effect == "permit"
	d.permitted_fields == ["address", "name"]
	"assigned_case" in d.reasons
}

# Minimum necessary: the agreement covers name and address, not the phone number.
test_fields_outside_the_agreement_are_withheld if {
	d := decide(disclosing({"type": "agency", "id": "agency-tax"}, {"legal_basis": "TCA-Art-30"}, ["name", "phone"]))
	d.effect == "permit"
	d.permitted_fields == ["name"]
}

test_nothing_the_agreement_covers_is_denied if {
	d := decide(disclosing({"type": "agency", "id": "agency-tax"}, {"legal_basis": "TCA-Art-30"}, ["phone"]))
	d.effect == "deny"
	d.reasons == ["no_permitted_fields"]
}

test_agency_without_any_agreement_is_denied if {
	d := decide(disclosing({"type": "agency", "id": "agency-unknown"}, {"legal_basis": "TCA-Art-30"}, ["name"]))
	d.effect == "deny"
	d.reasons == ["recipient_no_agreement"]
}

test_another_agencys_legal_basis_is_a_mismatch if {
	d := decide(disclosing({"type": "agency", "id": "agency-tax"}, {"legal_basis": "LSA-Art-7"}, ["name"]))
	d.effect == "deny"
	d.reasons == ["legal_basis_mismatch"]
}

test_agency_disclosure_needs_a_legal_basis if {
	d := decide(disclosing({"type": "agency", "id": "agency-tax"}, {"legal_basis": null}, ["name"]))
	d.effect == "deny"
	"legal_basis_required" in d.reasons
}

# agency-labour has an expired agreement (DSA-L1) and a valid one (DSA-L2): only the valid one counts.
test_only_valid_agreements_grant_fields if {
	d := decide(disclosing({"type": "agency", "id": "agency-labour"}, {"legal_basis": "LSA-Art-7"}, ["name", "employer"]))
	d.effect == "permit"
	d.permitted_fields == ["name"]
}

test_expiry_is_judged_at_decision_time if {
	inp := fx.patch(
		disclosing({"type": "agency", "id": "agency-tax"}, {"legal_basis": "TCA-Art-30"}, ["name"]),
		"context", {"time": "2028-01-02T10:00:00+08:00"},
	)
	d := decide(inp)
	d.effect == "deny"
	d.reasons == ["agreement_expired"]
}

test_mydata_with_the_citizens_consent_is_permitted if {
	inp := disclosing({"type": "mydata", "id": "mydata-bank-1"}, {"consent_id": "CNS-1", "legal_basis": null}, ["name", "address"])
	d := decide(inp)
	d.effect == "permit"
	d.permitted_fields == ["name"]
}

test_mydata_consent_given_to_another_party_is_denied if {
	inp := disclosing({"type": "mydata", "id": "mydata-bank-2"}, {"consent_id": "CNS-1", "legal_basis": null}, ["name"])
	d := decide(inp)
	d.effect == "deny"
	d.reasons == ["consent_party_mismatch"]
}

test_mydata_without_consent_is_denied if {
	inp := disclosing({"type": "mydata", "id": "mydata-bank-1"}, {"consent_id": null, "legal_basis": null}, ["name"])
	d := decide(inp)
	d.effect == "deny"
	d.reasons == ["no_consent"]
}

test_mydata_revoked_consent_is_denied if {
	inp := disclosing({"type": "mydata", "id": "mydata-bank-1"}, {"consent_id": "CNS-REVOKED", "legal_basis": null}, ["name"])
	d := decide(inp)
	d.effect == "deny"
	d.reasons == ["consent_revoked"]
}

test_the_citizen_may_receive_their_own_data if {
	d := decide(disclosing({"type": "citizen", "id": fx.citizen_a}, {"legal_basis": "PDPA-Art-10"}, ["name", "phone"]))
	d.effect == "permit"
	d.permitted_fields == ["name", "phone"]
}

test_another_citizen_is_not_the_data_subject if {
	d := decide(disclosing({"type": "citizen", "id": fx.citizen_b}, {"legal_basis": "PDPA-Art-10"}, ["name"]))
	d.effect == "deny"
	d.reasons == ["recipient_not_data_subject"]
}

test_a_disclosure_without_a_recipient_is_denied if {
	d := decide(disclosing(null, {"legal_basis": "TCA-Art-30"}, ["name"]))
	d.effect == "deny"
	d.reasons == ["recipient_required"]
	not "recipient" in object.keys(fx.officer)
	d2 := decide(fx.patch(fx.with_action(fx.officer, "disclose"), "purpose", {"legal_basis": "TCA-Art-30"}))
	d2.reasons == ["recipient_required"]
}

# Need-to-know still comes first: a valid agreement does not let an officer off the case.
test_a_valid_agreement_does_not_replace_need_to_know if {
	d := decide(fx.patch(to_tax, "purpose", {"case_id": "C-OTHER"}))
	d.effect == "deny"
	d.reasons == ["not_assigned"]
}

# Reads are not disclosures: the recipient checks apply to action "disclose" only.
test_reads_are_not_checked_for_a_recipient if {
	d := decide(fx.officer)
	d.effect == "permit"
}

# Agencies reading directly keep their own module; the recipient checks are for staff.
test_agency_callers_are_judged_by_external_rules if {
	d := decide(fx.agency)
	d.reasons == ["agreement_valid"]
}

# The PDP's request model admits only the three types; the pack refuses anything else on its own
# (a remote OPA may be fed by another PEP).
test_an_unknown_recipient_type_is_denied if {
	d := decide(disclosing({"type": "press", "id": "newspaper-1"}, {"legal_basis": "TCA-Art-30"}, ["name"]))
	d.effect == "deny"
	d.reasons == ["recipient_type_not_permitted"]
}
