# Batch disclosure to another agency under its data-sharing agreement (`ztcp exchange send`,
# POST /v1/exchange/batches): one decision for the whole batch (resource.type "batch", no
# citizen_ref). Who may run it, from where, on what device, is decided here; the recipient's
# agreement (approved, in force, this dataset and legal basis) and the fields outside it are
# disclosure.rego's, as for a one-record disclosure. Need-to-know does not apply to a batch: the
# agreement is its legal ground, and every citizen's disclosure is recorded in the ledger.
package ztcp.exchange

import rego.v1

cfg := data.ztcp.config.exchange

batch if {
	input.action == "disclose"
	input.resource.type == "batch"
}

applies if {
	batch
	data.ztcp.common.is_employee
}

# Helpers, negated below (README, portability).
exchange_role if data.ztcp.common.has_any_role(cfg.roles)

zone_allowed if input.context.network_zone in cfg.network_zones

agency_recipient if input.recipient.type == "agency"

purpose_given if {
	is_string(input.purpose.code)
	input.purpose.code != ""
}

deny contains "exchange_role_required" if {
	applies
	not exchange_role
}

deny contains "network_not_permitted" if {
	applies
	not zone_allowed
}

deny contains "device_not_managed" if {
	applies
	not data.ztcp.common.device_managed
}

deny contains "device_not_compliant" if {
	applies
	data.ztcp.common.device_managed
	not data.ztcp.common.device_compliant
}

deny contains "purpose_required" if {
	applies
	not purpose_given
}

deny contains "batch_recipient_must_be_agency" if {
	applies
	not agency_recipient
}

grant contains "exchange_batch_permitted" if {
	applies
	exchange_role
	zone_allowed
	data.ztcp.common.device_managed
	data.ztcp.common.device_compliant
	purpose_given
	agency_recipient
}
