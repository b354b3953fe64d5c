# Data leaving the bureau to a third party.
#  - Agencies (subject.type "agency", role external_agency) over the exchange backbone: only an
#    approved, unexpired data-sharing agreement for this dataset whose legal basis is the one
#    stated in the purpose; fields = requested ∩ agreement fields (minimum necessary).
#  - MyData parties (subject.type "mydata_party", role mydata_party): only with a valid consent
#    named by purpose.consent_id for this party, citizen and dataset; fields = requested ∩ consented.
# Agreements are indexed by agency id (data.bureau.agreements[id]) and consents by id, so a
# decision touches only the caller's own entries.
package ztcp.external

import rego.v1

cfg := data.ztcp.config.external

governed if data.ztcp.common.classification != "public"

# authz.rego consults this module only when it applies.
applies if agency

applies if mydata

# --- agencies ---------------------------------------------------------------------------------

agency if {
	input.subject.type == "agency"
	governed
}

candidates := agreements_of(input.subject.id)

# A party's agreements for the requested dataset (also used by disclosure.rego for the recipient).
agreements_of(party) := [a |
	some a in object.get(data.ztcp.common.agreements, party, [])
	a.dataset == input.resource.dataset
]

# Reasons an agreement cannot be used; empty means valid. An agreement without a status is taken
# as approved (the register holds approved agreements); any other status is not.
agreement_problems(a) := (({p | not_approved(a); p := "agreement_not_approved"} |
	{p | not data.ztcp.common.in_force(a); p := "agreement_expired"}) |
	{p | legal_basis_differs(a); p := "legal_basis_mismatch"})

not_approved(a) if object.get(a, "status", "approved") != "approved"

legal_basis_differs(a) if {
	is_string(input.purpose.legal_basis)
	a.legal_basis != input.purpose.legal_basis
}

valid_agreements := usable(candidates)

usable(agreements) := [a |
	some a in agreements
	count(agreement_problems(a)) == 0
]

agency_deny contains "role_not_permitted" if not "external_agency" in data.ztcp.common.roles

# `not input.x in …` and `not is_string(input.x)` fail in OPA when input.x is missing (regorus
# holds them): each test is a helper rule and the deny negates the helper (README, portability).
agency_action if input.action in cfg.agency_actions

agency_zone if input.context.network_zone in cfg.agency_network_zones

agency_deny contains "action_not_permitted" if not agency_action

agency_deny contains "network_not_permitted" if not agency_zone

agency_deny contains "legal_basis_required" if not data.ztcp.common.legal_basis_given

agency_deny contains "no_agreement" if count(candidates) == 0

agency_deny contains problem if {
	is_string(input.purpose.legal_basis)
	count(valid_agreements) == 0
	some a in candidates
	some problem in agreement_problems(a)
}

agreement_fields contains f if {
	some a in valid_agreements
	some f in a.fields
}

# --- MyData parties ---------------------------------------------------------------------------

mydata if {
	input.subject.type == "mydata_party"
	governed
}

consent := data.ztcp.common.consents[input.purpose.consent_id] if is_string(input.purpose.consent_id)

consent_revoked if consent.revoked == true

consent_revoked if consent.status == "revoked"

mydata_deny contains "role_not_permitted" if not "mydata_party" in data.ztcp.common.roles

mydata_action if input.action in cfg.mydata_actions

mydata_zone if input.context.network_zone in cfg.mydata_network_zones

mydata_deny contains "action_not_permitted" if not mydata_action

mydata_deny contains "network_not_permitted" if not mydata_zone

mydata_deny contains problem if some problem in consent_problems(input.subject.id)

# Reasons the consent named in the purpose does not let ``party`` have this citizen's data
# (also used by disclosure.rego for a MyData recipient).
consent_problems(party) := {"no_consent"} if not consent

consent_problems(party) := (((({p | consent.party != party; p := "consent_party_mismatch"} |
	{p | not consent_same_citizen; p := "consent_citizen_mismatch"}) |
	{p | consent.dataset != input.resource.dataset; p := "consent_dataset_mismatch"}) |
	{p | not data.ztcp.common.in_force(consent); p := "consent_expired"}) |
	{p | consent_revoked; p := "consent_revoked"}) if consent

consent_same_citizen if {
	is_string(input.resource.citizen_ref)
	consent.citizen_ref == input.resource.citizen_ref
}

consent_fields contains f if {
	some f in consent.fields
}

# --- module interface -------------------------------------------------------------------------

deny contains reason if {
	agency
	some reason in agency_deny
}

deny contains reason if {
	mydata
	some reason in mydata_deny
}

grant contains "agreement_valid" if {
	agency
	count(agency_deny) == 0
}

grant contains "consent_valid" if {
	mydata
	count(mydata_deny) == 0
}

withheld contains f if {
	agency
	some f in data.ztcp.common.requested_fields
	not f in agreement_fields
}

withheld contains f if {
	mydata
	some f in data.ztcp.common.requested_fields
	not f in consent_fields
}
