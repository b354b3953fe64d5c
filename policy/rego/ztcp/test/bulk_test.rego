package ztcp.bulk_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

test_supervisor_export_permitted_with_max_rows if {
	d := authz.decision with input as fx.supervisor_export with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["bulk_permitted"]
	{"type": "max_rows", "limit": 10000} in d.obligations
	{"type": "record_provenance"} in d.obligations
}

test_supervisor_bulk_search_max_rows if {
	d := authz.decision with input as fx.with_action(fx.supervisor_export, "bulk_search") with data.bureau as fx.bureau
	d.effect == "permit"
	{"type": "max_rows", "limit": 5000} in d.obligations
}

test_max_rows_from_config if {
	d := authz.decision with input as fx.supervisor_export with data.bureau as fx.bureau
		with data.ztcp.config.max_rows.export.supervisor as 250
	{"type": "max_rows", "limit": 250} in d.obligations
}

test_case_officer_cannot_export if {
	inp := fx.patch(fx.supervisor_export, "subject", {"roles": ["case_officer"]})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["action_not_permitted", "bulk_not_permitted"]
}

test_export_from_vpn_denied if {
	inp := fx.patch(fx.supervisor_export, "context", {"network_zone": "vpn"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["network_not_permitted"]
}

test_export_from_noncompliant_device_denied if {
	inp := fx.patch(fx.supervisor_export, "device", {"compliant": false})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["device_not_compliant"]
}

test_export_from_unmanaged_device_denied if {
	inp := fx.patch(fx.supervisor_export, "device", {"managed": false})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["device_not_managed"]
}

test_export_needs_a_purpose if {
	inp := fx.patch(fx.supervisor_export, "purpose", {"code": null})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["purpose_required"]
}

# Ordinary search: the tightest limit among the subject's roles.
test_search_row_limit_is_min_over_roles if {
	inp := fx.with_action(fx.staff(["case_officer", "counter_staff"]), "search")
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	{"type": "max_rows", "limit": 20} in d.obligations
}

test_search_row_limit_default if {
	inp := fx.with_action(fx.staff(["case_officer"]), "search")
	d := authz.decision with input as inp with data.bureau as fx.bureau
		with data.ztcp.config.max_rows.search as {"default": 7}
	{"type": "max_rows", "limit": 7} in d.obligations
}

test_read_has_no_row_limit if {
	d := authz.decision with input as fx.officer with data.bureau as fx.bureau
	not "max_rows" in fx.obligation_types(d)
}
