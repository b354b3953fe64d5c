# Staff passing a citizen's personal data on to someone outside the bureau (action "disclose").
# Need-to-know still decides whether the officer may handle the record at all; this module adds
# what the recipient must hold, the same rules an agency or MyData party meets when it reads
# directly (external.rego):
#  - agency: an approved, unexpired data-sharing agreement of that agency for this dataset whose
#    legal basis is the one stated in the purpose; fields outside the agreement are withheld;
#  - mydata: the consent named by purpose.consent_id, given to that party by this citizen for this
#    dataset, unexpired and not revoked; fields outside the consent are withheld;
#  - citizen: only the data subject themself (recipient.id is their citizen_ref).
# A disclosure that does not name its recipient is denied: the PDP cannot check what it cannot see.
package ztcp.disclosure

import rego.v1

import data.ztcp.external

applies if {
	input.action == "disclose"
	data.ztcp.common.is_employee
	external.governed
}

recipient := input.recipient if is_object(input.recipient)

deny contains "recipient_required" if not recipient

deny contains "recipient_type_not_permitted" if {
	recipient
	not recipient_type_known
}

# Negated as a helper: `not recipient.type in …` fails in OPA when the type is missing.
recipient_type_known if recipient.type in {"agency", "mydata", "citizen"}

# --- agency over the exchange backbone ----------------------------------------------------------

agency_agreements := external.agreements_of(recipient.id) if recipient.type == "agency"

agency_valid := external.usable(agency_agreements)

deny contains "legal_basis_required" if {
	recipient.type == "agency"
	not data.ztcp.common.legal_basis_given
}

deny contains "recipient_no_agreement" if count(agency_agreements) == 0

deny contains problem if {
	is_string(input.purpose.legal_basis)
	count(agency_valid) == 0
	some a in agency_agreements
	some problem in external.agreement_problems(a)
}

# --- MyData party -------------------------------------------------------------------------------

deny contains problem if {
	recipient.type == "mydata"
	some problem in external.consent_problems(recipient.id)
}

# --- the citizen themself -----------------------------------------------------------------------

deny contains "recipient_not_data_subject" if {
	recipient.type == "citizen"
	not recipient.id == input.resource.citizen_ref
}

# --- minimum necessary --------------------------------------------------------------------------

allowed_fields contains f if {
	recipient.type == "agency"
	some a in agency_valid
	some f in a.fields
}

allowed_fields contains f if {
	recipient.type == "mydata"
	some f in external.consent.fields
}

# Only once the recipient is valid: a refused recipient is reported as such, not as "no fields".
withheld contains f if {
	count(deny) == 0
	recipient.type in {"agency", "mydata"}
	some f in data.ztcp.common.requested_fields
	not f in allowed_fields
}
