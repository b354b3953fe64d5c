"""The reference gateway: a PEP in front of the protected database (docs/design.md, flows 2–3).

One read, end to end, through named pieces: the route (:mod:`gateway.routes`) builds a
:class:`Caller` from the request and calls :meth:`Gateway.read`, which asks the decision point
(:meth:`pdp.point.DecisionPoint.decide`), settles the answer (step-up, deny, obligations), and reads
through :class:`keymgmt.ProtectedReader` — the decryption gate, which verifies the decision token,
appends the ``pii.read`` event through :class:`provenance.Recorder` (durable) and only then
decrypts (:class:`keymgmt.Envelope`) and masks.

The gateway never accepts a decision token from a client: the only decision it acts on is the one
it just obtained, bound to this record, these fields and this purpose. Refusals and outages are
:class:`pdp.problems.Problem` s (see :mod:`gateway.problems`); none carries plaintext.

Nothing personal is logged: errors name fields and reason codes, never values or national IDs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import ValidationError

import contracts
import keymgmt
import pdp
from contracts.decision import Context, Decision, DecisionRequest, Device
from gateway.context import via
from gateway.models import FIELD_PATTERN, NATIONAL_ID_COLUMN, DisclosureRequest, SearchRequest, UpdateRequest
from gateway.obligations import applied, check_obligations, max_rows, step_up_max_age, step_up_methods
from gateway.problems import db_down, deny, invalid, pdp_down, provider_down, refused, step_up
from pdp.identity import SubjectIdentity
from pdp.point import unavailable
from pdp.problems import Problem
from provenance import Receipt, StoredEntry

log = logging.getLogger("ztcp.gateway")

CALLER = "ztcp-gateway"  # how the decision log names this PEP
SYSTEM = "ztcp-gateway"  # how provenance events name it (via.system)
BANK_ACCOUNT_FIELD = "bank_account"  # its changes carry a bank_account_ref (mule-account detection)
READ_SOURCES = frozenset({"pii.read", "pii.export"})
STATE_COLUMN = "ztcp_dek"  # keymgmt's per-row DEK column: internal, never a readable field
_ACTOR_TYPES = {"employee": "staff", "citizen": "citizen", "agency": "agency", "mydata_party": "agency",
                "service": "service"}


class DecisionPoint(Protocol):
    def decide(self, request: DecisionRequest, *, caller: str | None = None) -> Decision: ...


class Recorder(Protocol):
    def record(self, event: contracts.ProvenanceEvent) -> Receipt: ...


class Ledger(Protocol):
    def get_by_event_ids(self, event_ids: Sequence[str]) -> dict[str, StoredEntry]: ...


@dataclass(frozen=True)
class Caller:
    """Who asks, from where: the verified end user, their bearer token (for the PDP), device and context."""

    subject: SubjectIdentity
    token: str
    device: Device
    context: Context


class _Capture:
    """Wraps the recorder for one request so the gateway can return the event id it recorded."""

    def __init__(self, inner: Recorder) -> None:
        self.inner = inner
        self.receipts: list[Receipt] = []

    def record(self, event: contracts.ProvenanceEvent) -> Receipt:
        receipt = self.inner.record(event)
        if getattr(event, "type", None) != "pii.denied":
            self.receipts.append(receipt)
        return receipt

    def provenance(self) -> dict[str, Any]:
        """The first recorded event's id and ledger seq (None when nothing was recorded)."""
        first = self.receipts[0] if self.receipts else None
        return {"event_id": first.event_id if first else None, "seq": first.seq if first else None}


class Gateway:
    """Decide, record, then decrypt: the four operations of the reference PEP.

    ``readers(dataset)`` gives the decryption gate over that dataset's protected table (None if
    there is none); ``classification(dataset)`` its class in the bureau's register, if any;
    ``clock`` is the one "now" (the demo's simulated week passes its own).
    """

    def __init__(
        self,
        *,
        point: DecisionPoint,
        recorder: Recorder,
        ledger: Ledger,
        readers: Callable[[str], keymgmt.ProtectedReader | None],
        decision_verifier: pdp.DecisionTokenVerifier,
        blind_index_key: Callable[[], bytes],
        clock: Callable[[], float] = time.time,
        classification: Callable[[str], str | None] | None = None,
    ) -> None:
        self.point = point
        self.recorder = recorder
        self.ledger = ledger
        self.readers = readers
        self.decision_verifier = decision_verifier
        self.blind_index_key = blind_index_key
        self.clock = clock
        self.classification = classification

    # -- the four operations ----------------------------------------------------------------------
    def read(self, caller: Caller, dataset: str, record_id: str, names: list[str], purpose: str,
             case_id: str | None) -> dict[str, Any]:
        """One record's permitted fields, masked; the ``pii.read`` is durable before any decryption."""
        reader, resource = self.open_record(dataset, record_id, names, "query.fields")
        purpose_doc = {"code": purpose, "case_id": case_id}
        decision = self.decided(caller, resource, "read", purpose_doc)
        permitted = [f for f in names if f in set(decision.permitted_fields)]
        limit = max_rows(decision)
        if limit is not None and limit < 1:
            raise deny(decision.model_copy(update={"reasons": ["max_rows_zero"]}))
        capture = _Capture(self.recorder)
        with _gate_errors(decision):
            values = self._gate(reader, capture, caller.subject).read(
                decision.token, record_id, permitted, purpose=purpose, via=via(caller.context), now=self.clock())
        recorded = capture.provenance()
        return {
            "dataset": dataset, "record_id": record_id, "citizen_ref": resource["citizen_ref"],
            "fields": values, "withheld_fields": [f for f in names if f not in values],
            "decision_id": decision.decision_id, "policy_revision": decision.policy.revision,
            "obligations_applied": applied(decision, set(values), recorded["event_id"], 1),
            "provenance": recorded,
        }

    def search(self, caller: Caller, dataset: str, body: SearchRequest) -> dict[str, Any]:
        """Exact lookup through the blind index, decided as ``search`` and recorded as ``pii.search``."""
        reader = self.reader_for(dataset)
        if body.column not in reader.table.spec.blind_index:
            raise invalid("column", f"{dataset} has no blind index on {body.column!r}")
        citizen_ref = None
        if body.column == NATIONAL_ID_COLUMN:
            try:
                citizen_ref = contracts.citizen_ref(body.value, self.blind_index_key())
            except contracts.InvalidNationalId as exc:
                raise invalid("value", str(exc)) from None  # the message never holds the value
        resource = self._classified({"type": "record", "dataset": dataset, "citizen_ref": citizen_ref,
                                     "fields": [body.column]})
        purpose_doc = {"code": body.purpose, "case_id": body.case_id}
        decision = self.decided(caller, resource, "search", purpose_doc)
        capture = _Capture(self.recorder)
        with _gate_errors(decision):
            pks = self._gate(reader, capture, caller.subject).search(
                decision.token, body.column, body.value, purpose=body.purpose, via=via(caller.context),
                now=self.clock())
        limit = max_rows(decision)
        truncated = limit is not None and len(pks) > limit
        pks = pks[:limit] if limit is not None else pks
        recorded = capture.provenance()
        return {
            "dataset": dataset, "citizen_ref": citizen_ref, "records": [{"record_id": str(pk)} for pk in pks],
            "count": len(pks), "truncated": truncated, "decision_id": decision.decision_id,
            "obligations_applied": applied(decision, set(), recorded["event_id"], len(pks)),
            "provenance": recorded,
        }

    def update(self, caller: Caller, dataset: str, record_id: str, body: UpdateRequest) -> dict[str, Any]:
        """Change fields of one record; the ``pii.update`` (names, never values) is durable before the write."""
        names = sorted(body.values)
        reader, resource = self.open_record(dataset, record_id, names, "values", changes=True)
        purpose_doc = body.purpose.model_dump(exclude_none=True)
        decision = self.decided(caller, resource, "update", purpose_doc)
        if set(names) - set(decision.permitted_fields):
            # An update is all or nothing: changing only some of the asked fields would corrupt the record.
            withheld = sorted(set(names) - set(decision.permitted_fields))
            self._denied_event(caller, decision, resource, purpose_doc)
            raise Problem(403, "Denied by policy", f"not permitted to change: {', '.join(withheld)}",
                          type_="urn:ztcp:problem:denied", decision_id=decision.decision_id,
                          reasons=["fields_not_permitted"])
        try:
            # The same check the decryption gate makes: the token is this decision's, for this change.
            # (a permit always carries a token; none is refused as malformed, never a crash)
            claims = pdp.verify_decision_token(decision.token or "", self.decision_verifier, now=self.clock())
        except pdp.DecisionTokenError as exc:
            raise Problem(403, "Refused", exc.reason, type_="urn:ztcp:problem:refused",
                          decision_id=decision.decision_id, reasons=[exc.reason]) from None
        if (claims.action != "update" or claims.dataset != dataset or claims.record_id != record_id
                or not claims.covers(names)):
            raise Problem(403, "Refused", "decision does not cover this change", type_="urn:ztcp:problem:refused",
                          decision_id=decision.decision_id, reasons=["decision_mismatch"])
        account_ref = None
        if BANK_ACCOUNT_FIELD in names and body.values[BANK_ACCOUNT_FIELD] is not None:
            # Which account the payout now goes to, as a keyed reference: the SIEM can see several
            # citizens redirected to one (mule) account without any account number being recorded.
            try:
                account_ref = contracts.bank_account_ref(str(body.values[BANK_ACCOUNT_FIELD]),
                                                          self.blind_index_key())
            except contracts.InvalidBankAccount as exc:
                raise invalid(f"values.{BANK_ACCOUNT_FIELD}", str(exc)) from None
        try:
            receipt = self.recorder.record(contracts.ProvenanceEvent.model_validate({
                "time": self._now(), "type": "pii.update", "actor": _actor(caller.subject),
                "via": {"system": SYSTEM, **via(caller.context)}, "citizen_ref": resource["citizen_ref"],
                "dataset": dataset, "record_id": record_id, "fields": names, "purpose": purpose_doc,
                "decision_id": decision.decision_id, "effect": "permit", "bank_account_ref": account_ref}))
        except ValidationError:
            raise invalid("purpose", "refused by the provenance schema (values shaped like a national ID or "
                                     "phone number are not allowed)") from None
        except Exception as exc:  # noqa: BLE001 - fail closed: an unrecorded change is not made
            log.warning("update under decision %s not recorded: %s", decision.decision_id, type(exc).__name__)
            raise Problem(503, "Provenance ledger unavailable", "the change could not be recorded, so it was "
                          "not made", type_="urn:ztcp:problem:ledger-unavailable",
                          decision_id=decision.decision_id, headers={"Retry-After": "5"}) from None
        table = reader.table
        try:
            table.update(reader.pk_value(record_id), dict(body.values))
        except keymgmt.ProviderUnavailable:
            raise provider_down(decision) from None
        except keymgmt.KeyMgmtError as exc:
            log.warning("update of %s failed after it was recorded: %s", dataset, type(exc).__name__)
            raise Problem(409, "Update failed", "the record could not be changed; the attempt is recorded",
                          decision_id=decision.decision_id) from None
        except sa.exc.SQLAlchemyError as exc:
            raise db_down(exc) from None
        return {
            "dataset": dataset, "record_id": record_id, "citizen_ref": resource["citizen_ref"],
            "updated_fields": names, "decision_id": decision.decision_id,
            "obligations_applied": applied(decision, set(), receipt.event_id, 1),
            "provenance": {"event_id": receipt.event_id, "seq": receipt.seq},
        }

    def disclose(self, caller: Caller, body: DisclosureRequest) -> dict[str, Any]:
        """Record that data left the agency (``pii.disclose``), decided with the recipient first."""
        _, resource = self.open_record(body.dataset, body.record_id, list(body.fields), "fields")
        citizen_ref = resource["citizen_ref"]
        sources = self._sources(body, caller.subject, citizen_ref)
        purpose_doc = body.purpose.model_dump(exclude_none=True)
        # The recipient goes to the PDP too: the policy checks their agreement or consent.
        decision = self.decided(caller, resource, "disclose", purpose_doc,
                                recipient=body.recipient.model_dump(include={"type", "id"}))
        fields = [f for f in body.fields if f in set(decision.permitted_fields)]
        try:
            event = contracts.ProvenanceEvent.model_validate({
                "time": self._now(), "type": "pii.disclose", "actor": _actor(caller.subject),
                "via": {"system": SYSTEM, **via(caller.context)}, "citizen_ref": citizen_ref,
                "dataset": body.dataset, "record_id": body.record_id, "fields": fields, "purpose": purpose_doc,
                "decision_id": decision.decision_id, "effect": "permit",
                "recipient": body.recipient.model_dump(exclude_none=True), "derived_from": sources})
        except ValidationError as exc:
            loc = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "body"
            raise invalid(loc or "body", "refused by the provenance schema (values shaped like a national "
                                         "ID or phone number are not allowed)") from None
        try:
            receipt = self.recorder.record(event)
        except Exception as exc:  # noqa: BLE001 - fail closed: an unrecorded disclosure is not allowed
            log.warning("disclosure under decision %s not recorded: %s", decision.decision_id, type(exc).__name__)
            raise Problem(503, "Provenance ledger unavailable", "the disclosure could not be recorded; "
                          "do not send the data", type_="urn:ztcp:problem:ledger-unavailable",
                          decision_id=decision.decision_id, headers={"Retry-After": "5"}) from None
        return {
            "event_id": receipt.event_id, "seq": receipt.seq, "decision_id": decision.decision_id,
            "citizen_ref": citizen_ref, "fields": fields,
            "withheld_fields": [f for f in body.fields if f not in fields],
            "recipient": body.recipient.model_dump(exclude_none=True), "derived_from": sources,
            "obligations_applied": applied(decision, set(fields), receipt.event_id, 1),
        }

    # -- the steps they share -------------------------------------------------------------------
    def reader_for(self, dataset: str) -> keymgmt.ProtectedReader:
        try:
            reader = self.readers(dataset)
        except sa.exc.SQLAlchemyError as exc:
            raise db_down(exc) from None
        if reader is None:
            raise Problem(404, "Not found", f"no protected dataset {dataset!r}")
        return reader

    def open_record(self, dataset: str, record_id: str, fields: list[str], where: str, *,
                    changes: bool = False) -> tuple[keymgmt.ProtectedReader, dict[str, Any]]:
        """What every one-record operation does before asking the PDP: the dataset's reader, ``fields``
        checked (named ``where`` in errors; a change may not touch the primary key), the record
        fetched and described as the decision's resource."""
        reader = self.reader_for(dataset)
        _check_fields(reader, fields, where)
        if changes and reader.table.spec.pk in fields:
            raise invalid(where, f"the primary key {reader.table.spec.pk!r} cannot be changed")
        row = _fetch(reader, record_id)
        column = reader.table.spec.citizen_ref_column
        resource = self._classified({"type": "record", "dataset": dataset, "record_id": record_id,
                                     "citizen_ref": row[column] if column else None, "fields": fields})
        return reader, resource

    def decided(self, caller: Caller, resource: dict[str, Any], action: str, purpose: dict[str, Any],
                recipient: dict[str, Any] | None = None) -> Decision:
        """The decision point's answer for this caller, settled: only a usable permit returns."""
        decision = self._decide(caller, resource, action, purpose, recipient)
        self._settle(decision, caller, resource, purpose)
        return decision

    def _decide(self, caller: Caller, resource: dict[str, Any], action: str, purpose: dict[str, Any],
                recipient: dict[str, Any] | None) -> Decision:
        try:
            request = DecisionRequest.model_validate({
                "subject_token": caller.token, "device": caller.device.model_dump(),
                "context": caller.context.model_dump(), "resource": resource, "action": action,
                "purpose": purpose, "recipient": recipient})
        except ValidationError as exc:
            loc = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "request"
            if loc.startswith("resource.citizen_ref"):
                # The stored reference is malformed: a data problem, not the caller's.
                log.error("stored citizen_ref of %s is malformed; refusing", resource.get("dataset"))
                raise Problem(503, "Record unavailable", "the record's citizen reference is invalid") from None
            raise invalid(loc, "invalid") from None
        return self.point.decide(request, caller=CALLER)

    def _settle(self, decision: Decision, caller: Caller, resource: dict[str, Any], purpose: dict[str, Any]) -> None:
        subject = caller.subject
        if decision.effect == "step_up":
            if subject.auth_method in step_up_methods(decision) and not self._sign_in_too_old(decision, subject):
                # Already signed in the way the policy asks, recently enough: challenging again would
                # loop the user through the same login forever, so this step-up cannot be met — fail closed.
                self._denied_event(caller, decision, resource, purpose)
                raise Problem(403, "Denied: step-up cannot help",
                              f"already authenticated with {subject.auth_method}; " + "; ".join(decision.reasons),
                              type_="urn:ztcp:problem:denied", decision_id=decision.decision_id,
                              reasons=[*decision.reasons, "step_up_already_satisfied"])
            raise step_up(decision)
        if unavailable(decision):  # the PDP's database is down: 503 (retry), and no pii.denied to record either
            raise pdp_down(decision)
        if decision.effect != "permit" or not decision.token:
            self._denied_event(caller, decision, resource, purpose)
            raise deny(decision)
        check_obligations(decision)

    def _sign_in_too_old(self, decision: Decision, subject: SubjectIdentity) -> bool:
        """Would a fresh sign-in with the same method help? Yes when it is older than the policy's
        max_age (or, when the policy names none, when the risk score counted a stale token)."""
        max_age = step_up_max_age(decision)
        if max_age is None:
            return any(f.name == "stale_token" for f in decision.risk.factors)
        signed_in = subject.auth_time or subject.issued_at
        return signed_in is None or self.clock() - signed_in > max_age

    def _denied_event(self, caller: Caller, decision: Decision, resource: dict[str, Any],
                      purpose: dict[str, Any]) -> None:
        """Best effort: the trace shows refused attempts too (the decision log has them regardless)."""
        try:
            self.recorder.record(contracts.ProvenanceEvent.model_validate({
                "time": self._now(), "type": "pii.denied", "actor": _actor(caller.subject),
                "via": {"system": SYSTEM, **via(caller.context)}, "citizen_ref": resource.get("citizen_ref"),
                "dataset": resource["dataset"], "record_id": resource.get("record_id"),
                "fields": resource.get("fields", []),
                "purpose": {k: v for k, v in purpose.items() if v} if purpose.get("code") else None,
                "decision_id": decision.decision_id, "effect": "deny"}))
        except Exception as exc:  # noqa: BLE001 - the refusal stands whether or not this is recorded
            log.warning("pii.denied for decision %s not recorded: %s", decision.decision_id, type(exc).__name__)

    def _gate(self, reader: keymgmt.ProtectedReader, capture: _Capture,
              subject: SubjectIdentity) -> keymgmt.ProtectedReader:
        """A per-request gate over the shared table (and its DEK cache), recording through ``capture``.

        The gate names the actor by the decision token's subject; the gateway adds what the verified
        subject token says of them (unit, roles), so the auditor sees "who, which unit"."""
        base = reader.event_factory

        def factory(**fields: Any) -> contracts.ProvenanceEvent:
            actor = fields.get("actor")
            if isinstance(actor, dict) and actor.get("id") == subject.id:
                fields["actor"] = {**actor, **_actor(subject)}
            return base(**fields)

        return keymgmt.ProtectedReader(reader.table, reader.verifier, capture, reader.audit, system=SYSTEM,
                                       event_factory=factory)

    def _classified(self, resource: dict[str, Any]) -> dict[str, Any]:
        # Declare the register's classification so the decision log shows what the policy applied.
        cls = self.classification(resource["dataset"]) if self.classification else None
        if cls in ("public", "internal", "personal", "special"):
            resource["classification"] = cls
        return resource

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def _sources(self, body: DisclosureRequest, subject: SubjectIdentity, citizen_ref: str | None) -> list[str]:
        """The read events a disclosure derives from: they must exist, be this subject's reads of this
        record, and together cover every disclosed field (you can only pass on what you have read)."""
        ids = list(dict.fromkeys(body.derived_from))
        try:
            found = self.ledger.get_by_event_ids(ids)
        except Exception as exc:  # noqa: BLE001 - cannot check lineage: fail closed
            log.warning("derived_from lookup failed: %s", type(exc).__name__)
            raise Problem(503, "Provenance ledger unavailable", "cannot check derived_from",
                          type_="urn:ztcp:problem:ledger-unavailable", headers={"Retry-After": "5"}) from None
        missing = [i for i in ids if i not in found]
        if missing:
            raise invalid("derived_from", f"unknown event id(s): {', '.join(missing[:5])}")
        covered: set[str] = set()
        for event_id in ids:
            ev = found[event_id].event
            if (ev.type not in READ_SOURCES or ev.actor.id != subject.id or ev.citizen_ref != citizen_ref
                    or ev.dataset != body.dataset or ev.record_id != body.record_id):
                raise invalid("derived_from", f"event {event_id} is not your read of this record")
            covered.update(ev.fields)
        uncovered = sorted(set(body.fields) - covered)
        if uncovered:
            raise invalid("fields", f"not read in derived_from: {', '.join(uncovered)}")
        return ids


def parse_fields(fields: str) -> list[str]:
    """The ``fields`` query parameter: comma-separated names, none repeated, at most 200."""
    names = [f.strip() for f in fields.split(",")]
    if any(not FIELD_PATTERN.fullmatch(f) or len(f) > 64 for f in names):
        raise invalid("query.fields", "comma-separated field names ([a-z][a-z0-9_]*)")
    if len(set(names)) != len(names) or len(names) > 200:
        raise invalid("query.fields", "at most 200 fields, none repeated")
    return names


@contextmanager
def _gate_errors(decision: Decision) -> Iterator[None]:
    """The decryption gate's refusals and outages as the problems a client can act on."""
    try:
        yield
    except keymgmt.DecryptRefused as exc:
        raise refused(exc, decision) from None
    except keymgmt.ProviderUnavailable:
        raise provider_down(decision) from None
    except sa.exc.SQLAlchemyError as exc:
        raise db_down(exc) from None


def _fetch(reader: keymgmt.ProtectedReader, record_id: str) -> dict[str, Any]:
    table = reader.table
    pk: object = record_id
    try:
        if table.table.c[table.spec.pk].type.python_type is int:
            if not (record_id.isascii() and record_id.isdigit()) or len(record_id) > 18:  # int64
                raise Problem(404, "Not found", "no such record")
            pk = int(record_id)
    except NotImplementedError:
        pass
    try:
        row = table.fetch_row(pk)
    except sa.exc.SQLAlchemyError as exc:
        raise db_down(exc) from None
    if row is None:
        raise Problem(404, "Not found", "no such record")
    return row


def _check_fields(reader: keymgmt.ProtectedReader, fields: list[str], where: str) -> None:
    spec = reader.table.spec
    names = {col.name for col in reader.table.table.columns}
    readable = {c for c in names if not c.endswith("_bidx")} - {STATE_COLUMN, spec.citizen_ref_column}
    unknown = sorted(set(fields) - readable)
    if unknown:
        raise invalid(where, f"unknown field(s) in {spec.dataset}: {', '.join(unknown)}")


def _actor(subject: SubjectIdentity) -> dict[str, Any]:
    actor: dict[str, Any] = {"id": subject.id, "type": _ACTOR_TYPES.get(subject.type, "staff"),
                             "roles": list(subject.roles)}
    if subject.org_unit:
        actor["unit"] = subject.org_unit
    return actor
