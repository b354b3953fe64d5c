"""Lineage exports: OpenLineage run events and W3C PROV-JSON.

Each provenance event becomes an OpenLineage ``RunEvent`` (eventType COMPLETE): the job is the
system and event type, inputs are the dataset read, outputs the recipient of a disclosure; a custom
run facet ``ztcp_provenance`` carries seq, leaf hash, citizen_ref, purpose and ``derived_from`` (the
lineage edges). PROV-JSON maps events to activities, records/disclosed copies to entities, staff
and recipients to agents, with ``used``, ``wasGeneratedBy``, ``wasAssociatedWith``,
``wasInformedBy`` (derived_from) and ``wasDerivedFrom``.
"""

from __future__ import annotations

import uuid
from typing import Any

from provenance.trace import Trace

PRODUCER = "https://github.com/ztcp/ztcp/provenance"
OL_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACET_SCHEMA = "https://ztcp.local/spec/facets/1-0-0/ZtcpProvenanceRunFacet.json"
_NS = uuid.UUID("6f1c1e0a-8d2b-4d4e-9a51-7a6e2b7d9c10")


def _run_id(event_id: str) -> str:
    try:
        return str(uuid.UUID(event_id))
    except ValueError:
        return str(uuid.uuid5(_NS, event_id))  # OpenLineage run ids must be UUIDs


def to_openlineage(trace: Trace, namespace: str = "ztcp") -> list[dict[str, Any]]:
    out = []
    for t in trace.events:
        e = t.event
        job = f"{e.via.system or e.actor.id}.{e.type}"
        inputs = [{"namespace": f"{namespace}://datasets", "name": e.dataset}] if e.dataset else []
        outputs = (
            [{"namespace": f"{namespace}://recipients/{e.recipient.type}", "name": e.recipient.id}]
            if e.recipient
            else []
        )
        out.append(
            {
                "eventType": "COMPLETE",
                "eventTime": e.time.isoformat().replace("+00:00", "Z"),
                "producer": PRODUCER,
                "schemaURL": OL_SCHEMA,
                "run": {
                    "runId": _run_id(e.event_id),
                    "facets": {
                        "ztcp_provenance": {
                            "_producer": PRODUCER,
                            "_schemaURL": FACET_SCHEMA,
                            "event_id": e.event_id,
                            "seq": t.seq,
                            "leaf_hash": t.leaf_hash.hex(),
                            "verified": t.verified,
                            "type": e.type,
                            "citizen_ref": e.citizen_ref,
                            "record_id": e.record_id,
                            "fields": list(e.fields),
                            "purpose": e.purpose.model_dump(exclude_none=True) if e.purpose else None,
                            "decision_id": e.decision_id,
                            "effect": e.effect,
                            "actor": {"id": e.actor.id, "unit": e.actor.unit, "agency": e.actor.agency},
                            "derived_from": [_run_id(d) for d in e.derived_from],
                        }
                    },
                },
                "job": {"namespace": namespace, "name": job},
                "inputs": inputs,
                "outputs": outputs,
            }
        )
    return out


def to_prov_json(trace: Trace) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "prefix": {"ztcp": "https://ztcp.local/ns/provenance#", "cr": "https://ztcp.local/ns/citizen#"},
        "entity": {},
        "activity": {},
        "agent": {},
        "used": {},
        "wasGeneratedBy": {},
        "wasAssociatedWith": {},
        "wasInformedBy": {},
        "wasDerivedFrom": {},
    }
    n = 0

    def rel(kind: str, body: dict[str, Any]) -> None:
        nonlocal n
        n += 1
        doc[kind][f"_:{kind}{n}"] = body

    for t in trace.events:
        e = t.event
        act = f"ztcp:event/{e.event_id}"
        doc["activity"][act] = {
            "prov:startTime": e.time.isoformat(),
            "prov:type": e.type,
            "ztcp:seq": t.seq,
            "ztcp:leafHash": t.leaf_hash.hex(),
            "ztcp:verified": t.verified,
            "ztcp:purpose": e.purpose.code if e.purpose else None,
            "ztcp:caseId": e.purpose.case_id if e.purpose else None,
            "ztcp:legalBasis": e.purpose.legal_basis if e.purpose else None,
            "ztcp:consentId": e.purpose.consent_id if e.purpose else None,
            "ztcp:decisionId": e.decision_id,
            "ztcp:fields": " ".join(e.fields),
        }
        agent = f"ztcp:actor/{e.actor.id}"
        doc["agent"].setdefault(
            agent,
            {
                "prov:type": "prov:Person" if e.actor.type == "staff" else "prov:SoftwareAgent",
                "ztcp:unit": e.actor.unit,
                "ztcp:agency": e.actor.agency,
            },
        )
        rel("wasAssociatedWith", {"prov:activity": act, "prov:agent": agent})
        record = f"ztcp:record/{e.dataset}/{e.record_id}" if e.dataset and e.record_id else None
        if record:
            doc["entity"].setdefault(
                record,
                {"prov:type": "ztcp:PersonalRecord", "ztcp:citizenRef": e.citizen_ref, "ztcp:dataset": e.dataset},
            )
            rel("used", {"prov:activity": act, "prov:entity": record})
        if e.recipient:
            copy = f"ztcp:disclosure/{e.event_id}"
            rcpt = f"ztcp:recipient/{e.recipient.type}/{e.recipient.id}"
            doc["entity"][copy] = {"prov:type": "ztcp:DisclosedData", "ztcp:recipient": rcpt}
            doc["agent"].setdefault(rcpt, {"prov:type": "prov:Organization", "ztcp:name": e.recipient.name})
            rel("wasGeneratedBy", {"prov:entity": copy, "prov:activity": act})
            if record:
                rel("wasDerivedFrom", {"prov:generatedEntity": copy, "prov:usedEntity": record})
        for src in e.derived_from:
            rel("wasInformedBy", {"prov:informed": act, "prov:informant": f"ztcp:event/{src}"})
    # PROV-JSON has no null: drop absent attributes.
    out: dict[str, Any] = {"prefix": doc.pop("prefix")}
    for k, v in doc.items():
        if v:
            out[k] = {i: {a: b for a, b in attrs.items() if b is not None} for i, attrs in v.items()}
    return out
