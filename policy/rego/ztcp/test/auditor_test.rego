package ztcp.auditor_test

import rego.v1

import data.ztcp.authz
import data.ztcp.test.fixtures as fx

provenance_search := fx.with_action(
	fx.patch(fx.staff(["auditor"]), "resource", {
		"dataset": "provenance_events", "citizen_ref": fx.citizen_a, "record_id": null,
		"fields": ["actor", "purpose", "fields", "decision_id"], "classification": "internal",
	}),
	"search",
)

# Auditors trace a citizen through the audit datasets without any case.
test_auditor_searches_provenance_events if {
	inp := fx.patch(provenance_search, "purpose", {"case_id": null, "code": "internal_audit"})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["role_permits"]
	{"type": "max_rows", "limit": 1000} in d.obligations
	not {"type": "record_provenance"} in d.obligations
}

test_auditor_gets_no_personal_values if {
	d := authz.decision with input as fx.staff(["auditor"]) with data.bureau as fx.bureau
	d.effect == "deny"
	"auditor_no_personal_values" in d.reasons
	d.permitted_fields == []
}

test_security_officer_reads_decision_log if {
	inp := fx.patch(fx.staff(["security_officer"]), "resource", {
		"dataset": "decision_log", "citizen_ref": null, "fields": ["decision_id", "effect"], "classification": "internal",
	})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
}

test_case_officer_cannot_read_decision_log if {
	inp := fx.patch(fx.officer, "resource", {
		"dataset": "decision_log", "citizen_ref": null, "fields": ["decision_id"], "classification": "internal",
	})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "deny"
	d.reasons == ["audit_role_required"]
}

test_key_custodian_reads_key_events_only if {
	inp := fx.patch(fx.staff(["key_custodian"]), "resource", {
		"dataset": "key_events", "citizen_ref": null, "fields": ["key_id", "version"], "classification": "internal",
	})
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	other := authz.decision with input as fx.patch(inp, "resource", {"dataset": "decision_log"}) with data.bureau as fx.bureau
	other.reasons == ["dataset_not_permitted"]
}

# The console's SOC analyst triages alerts (update = acknowledge / close) and reads their evidence.
test_soc_analyst_updates_alerts if {
	inp := fx.with_action(fx.patch(fx.staff(["soc_analyst"]), "resource", {
		"dataset": "alerts", "citizen_ref": null, "fields": [], "classification": "internal",
	}), "update")
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	d.reasons == ["role_permits"]
}

test_soc_analyst_gets_no_policy_revisions_or_personal_values if {
	revisions := fx.patch(fx.staff(["soc_analyst"]), "resource", {
		"dataset": "policy_revisions", "citizen_ref": null, "fields": [], "classification": "internal",
	})
	d := authz.decision with input as revisions with data.bureau as fx.bureau
	d.reasons == ["dataset_not_permitted"]
	personal := authz.decision with input as fx.staff(["soc_analyst"]) with data.bureau as fx.bureau
	personal.effect == "deny"
}

# Approve / publish / roll back in the console are updates of policy_revisions: officers only.
test_security_officer_updates_policy_revisions if {
	inp := fx.with_action(fx.patch(fx.staff(["security_officer"]), "resource", {
		"dataset": "policy_revisions", "citizen_ref": null, "fields": [], "classification": "internal",
	}), "update")
	d := authz.decision with input as inp with data.bureau as fx.bureau
	d.effect == "permit"
	auditor := authz.decision with input as fx.patch(inp, "subject", object.union(inp.subject, {"roles": ["auditor"]}))
		with data.bureau as fx.bureau
	auditor.effect == "deny"
}
