# Shared fixtures for the pack's unit tests: a bureau register and one input per kind of caller.
# Variants are built with patch(): a one-level object.union per section, because engines differ
# on whether object.union merges nested objects (regorus: recursive like OPA; regopy: shallow).
package ztcp.test.fixtures

import rego.v1

citizen_a := "cr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

citizen_b := "cr_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"

citizen_vip := "cr_VIPVIPVIPVIPVIPVIPVIPVIPVIPVIPV"

now := "2026-11-22T10:00:00+08:00"

bureau := {
	"cases": {
		"C-1": {
			"assignees": ["emp-0042"], "citizen_ref": citizen_a, "purposes": ["benefit_review"],
			"status": "open", "sealed": false, "org_unit": "taipei-03",
		},
		"C-CLOSED": {
			"assignees": ["emp-0042"], "citizen_ref": citizen_a, "purposes": ["benefit_review"],
			"status": "closed", "sealed": false,
		},
		"C-SEALED": {
			"assignees": ["emp-0042"], "citizen_ref": citizen_a, "purposes": ["benefit_review"],
			"status": "open", "sealed": true,
		},
		"C-OTHER": {
			"assignees": ["emp-0077"], "citizen_ref": citizen_a, "purposes": ["benefit_review"],
			"status": "open", "sealed": false, "org_unit": "taipei-03",
		},
		"C-VIP": {
			"assignees": ["emp-0042"], "citizen_ref": citizen_vip, "purposes": ["benefit_review"],
			"status": "open", "sealed": false,
		},
		"C-MED": {
			"assignees": ["emp-0042"], "citizen_ref": citizen_a, "purposes": ["injury_claim"],
			"status": "open", "sealed": false,
		},
	},
	"agreements": {
		"agency-tax": [
			{
				"id": "DSA-1", "dataset": "insured_persons", "fields": ["name", "address", "insurance_type"],
				"legal_basis": "TCA-Art-30", "expires": "2027-12-31T00:00:00Z", "status": "approved",
			},
			{
				"id": "DSA-OLD", "dataset": "claims", "fields": ["claim_status"],
				"legal_basis": "TCA-Art-30", "expires": "2025-12-31T00:00:00Z",
			},
			{
				"id": "DSA-DRAFT", "dataset": "payments", "fields": ["payment_amount"],
				"legal_basis": "TCA-Art-30", "expires": "2027-12-31T00:00:00Z", "status": "draft",
			},
		],
		"agency-labour": [
			{
				"id": "DSA-L1", "dataset": "insured_persons", "fields": ["employer"],
				"legal_basis": "LSA-Art-7", "expires": "2026-01-01T00:00:00Z",
			},
			{
				"id": "DSA-L2", "dataset": "insured_persons", "fields": ["name", "insurance_type"],
				"legal_basis": "LSA-Art-7", "expires": "2027-01-01T00:00:00Z",
			},
		],
	},
	"consents": {
		"CNS-1": {
			"party": "mydata-bank-1", "citizen_ref": citizen_a, "dataset": "insured_persons",
			"fields": ["name", "insurance_type"], "expires": "2027-06-30T00:00:00Z",
		},
		"CNS-EXPIRED": {
			"party": "mydata-bank-1", "citizen_ref": citizen_a, "dataset": "insured_persons",
			"fields": ["name"], "expires": "2026-11-22T01:59:59Z",
		},
		"CNS-REVOKED": {
			"party": "mydata-bank-1", "citizen_ref": citizen_a, "dataset": "insured_persons",
			"fields": ["name"], "expires": "2027-06-30T00:00:00Z", "revoked": true,
		},
	},
	"protected_citizens": [citizen_vip],
	"datasets": {
		"insured_persons": {
			"classification": "personal",
			"fields": [
				"name", "national_id", "address", "phone", "birth_date", "insurance_type", "employer",
				"bank_account", "investigation_notes",
			],
		},
		"claims": {
			"classification": "personal",
			"fields": ["claim_id", "claim_status", "claim_type", "payment_date", "bank_account", "national_id", "name"],
		},
		"payments": {"classification": "personal", "fields": ["name", "payment_amount", "bank_account"]},
		"medical_records": {"classification": "special", "fields": ["name", "diagnosis", "treatment"]},
		"provenance_events": {"classification": "internal"},
		"decision_log": {"classification": "internal"},
		"system_inventory": {"classification": "internal"},
		"office_locations": {"classification": "public"},
	},
}

signals := {
	"auth_strength": 3, "token_age_s": 120, "recent_denies_1h": 0, "failed_step_ups_1h": 0,
	"device_first_seen": false, "off_hours": false, "holiday": false, "local_hour": 10,
	"impossible_travel": false, "travel_speed_kmh": 0, "request_rate_1m": 3,
	"distinct_citizens_10m": 2, "distinct_citizens_1h": 5, "first_dataset_access": false,
	"self_record": false,
}

# Case officer, FIDO2 + MFA, managed compliant device, internal network, 10:00, assigned case.
officer := {
	"subject": {
		"id": "emp-0042", "type": "employee", "roles": ["case_officer"], "org_unit": "taipei-03",
		"auth": {"method": "fido2", "mfa": true, "auth_time": 1795300000, "token_age_s": 120},
	},
	"device": {
		"id": "dev-9", "managed": true, "compliant": true,
		"posture": {"baseline_ok": true, "edr_running": true, "disk_encrypted": true, "patch_age_days": 12},
	},
	"context": {
		"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter", "time": now,
		"geo": {"lat": 25.03, "lon": 121.56, "country": "TW"},
	},
	"resource": {
		"type": "insured_person", "dataset": "insured_persons", "record_id": "r-123",
		"citizen_ref": citizen_a, "fields": ["name", "address"], "classification": "personal",
	},
	"action": "read",
	"purpose": {
		"code": "benefit_review", "case_id": "C-1", "legal_basis": "LIA-Art-10",
		"consent_id": null, "justification": null, "break_glass": false,
	},
	"signals": signals,
}

# The same officer at 02:00 from an unknown, unmanaged laptop on the internet.
officer_night := patch(
	patch(patch(officer, "device", {"id": "dev-x", "managed": false, "compliant": false}),
		"context", {"ip": "203.0.113.9", "network_zone": "internet", "time": "2026-11-22T02:00:00+08:00"}),
	"signals", {"off_hours": true, "local_hour": 2, "device_first_seen": true},
)

# A role-only variant of the officer (same login, device, case).
staff(roles) := patch(officer, "subject", {"roles": roles})

supervisor_export := with_action(
	patch(
		patch(staff(["supervisor"]), "resource", {"citizen_ref": null, "record_id": null, "fields": ["name", "insurance_type"]}),
		"purpose", {"case_id": null, "code": "statistics"},
	),
	"export",
)

agency := {
	"subject": {
		"id": "agency-tax", "type": "agency", "roles": ["external_agency"], "org_unit": "tax",
		"auth": {"method": "citizen_cert", "mfa": true, "auth_time": 1795300000, "token_age_s": 30},
	},
	"device": {"id": "gw-tax", "managed": false, "compliant": false, "posture": {}},
	"context": {"ip": "172.16.0.5", "network_zone": "exchange", "channel": "exchange", "time": now, "geo": null},
	"resource": {
		"type": "insured_person", "dataset": "insured_persons", "record_id": "r-123",
		"citizen_ref": citizen_a, "fields": ["name", "address", "national_id"], "classification": "personal",
	},
	"action": "disclose",
	"purpose": {
		"code": "tax_assessment", "case_id": null, "legal_basis": "TCA-Art-30",
		"consent_id": null, "justification": null, "break_glass": false,
	},
	"signals": object.union(signals, {"auth_strength": 3}),
}

mydata := patch(
	patch(
		patch(agency, "subject", {"id": "mydata-bank-1", "type": "mydata_party", "roles": ["mydata_party"]}),
		"purpose", {"code": "loan_application", "legal_basis": null, "consent_id": "CNS-1"},
	),
	"resource", {"fields": ["name", "insurance_type", "bank_account"]},
)

citizen := {
	"subject": {
		"id": "cit-1", "type": "citizen", "roles": ["citizen"], "org_unit": null,
		"auth": {"method": "citizen_cert", "mfa": true, "auth_time": 1795300000, "token_age_s": 60},
	},
	"device": {"id": "phone-1", "managed": false, "compliant": false, "posture": {}},
	"context": {"ip": "198.51.100.7", "network_zone": "internet", "channel": "eservice", "time": now, "geo": null},
	"resource": {
		"type": "insured_person", "dataset": "insured_persons", "record_id": "r-123",
		"citizen_ref": citizen_a, "fields": ["name", "address", "insurance_type"], "classification": "personal",
	},
	"action": "read",
	"purpose": {
		"code": "self_service", "case_id": null, "legal_basis": null,
		"consent_id": null, "justification": null, "break_glass": false,
	},
	"signals": object.union(signals, {"self_record": true}),
}

# --- helpers ----------------------------------------------------------------------------------

# Replace some keys of one top-level section of an input.
patch(inp, section, changes) := object.union(inp, {section: object.union(inp[section], changes)})

with_action(inp, action) := object.union(inp, {"action": action})

factor_names(d) := {f.name | some f in d.risk.factors}

obligation_types(d) := {o.type | some o in d.obligations}
