"""Decrypt with a decision: the only way plaintext leaves a protected table (docs/design.md, The guarantee).

Order of operations, each step fail-closed:

1. verify the decision token (``pdp.verify_decision_token`` with the injected verifier);
2. check it is a read permit for this dataset and record, for the caller's purpose, and that the
   requested fields are within ``claims.fields``;
3. load the row and check its ``citizen_ref`` is the token's;
4. append the ``pii.read`` provenance event through the injected recorder (durable before return);
5. only then decrypt, and apply the decision's masking obligations.

Any refusal raises :class:`DecryptRefused` with a reason code, returns no plaintext, and leaves a
``pii.denied`` provenance event (best effort: the ledger may be the thing that failed) and a
``key.decrypt_refused`` key audit event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, NoReturn, Protocol

import pdp
from contracts.provenance_event import ProvenanceEvent
from keymgmt.audit import KeyAuditLog
from keymgmt.errors import DecryptRefused, KeyMgmtError, ProviderUnavailable
from keymgmt.masking import apply_masks
from keymgmt.table import STATE_COLUMN, EncryptedTable

READ_ACTIONS = frozenset({"read"})
SEARCH_ACTIONS = frozenset({"search"})


class EventRecorder(Protocol):
    """What we need of ``provenance.Recorder``: durably record one event or raise."""

    def record(self, event: ProvenanceEvent) -> object: ...


class EventFactory(Protocol):
    """Builds the provenance event of a read, search or refusal from its fields (``ProvenanceEvent``'s)."""

    def __call__(self, **fields: Any) -> ProvenanceEvent: ...


def _default_event_factory(**fields: Any) -> ProvenanceEvent:
    return ProvenanceEvent(**fields)


class ProtectedReader:
    def __init__(
        self,
        table: EncryptedTable,
        verifier: pdp.DecisionTokenVerifier,
        recorder: EventRecorder,
        audit: KeyAuditLog | None = None,
        *,
        event_factory: EventFactory = _default_event_factory,
        system: str = "ztcp-keymgmt",
    ) -> None:
        self.table = table
        self.verifier = verifier
        self.recorder = recorder
        self.audit = audit
        self.event_factory = event_factory
        self.system = system

    def read(
        self,
        token: str | None,
        record_id: object,
        fields: Sequence[str] | None = None,
        *,
        purpose: str | None = None,
        via: dict[str, str] | None = None,
        now: float | None = None,
    ) -> dict[str, str | None]:
        """Plaintext of ``fields`` of one record, masked per the decision; or :class:`DecryptRefused`."""
        spec = self.table.spec
        rid = str(record_id)
        if not token:
            self._refuse("missing_token", None, rid, fields or (), via)
        try:
            claims = pdp.verify_decision_token(token, self.verifier, now=now)
        except pdp.DecisionTokenError as exc:
            self._refuse(exc.reason, None, rid, fields or (), via)
        requested = tuple(fields) if fields is not None else tuple(claims.fields)
        if claims.action not in READ_ACTIONS:
            self._refuse("wrong_action", claims, rid, requested, via)
        if claims.dataset != spec.dataset:
            self._refuse("wrong_dataset", claims, rid, requested, via)
        if claims.record_id != rid:
            self._refuse("wrong_record", claims, rid, requested, via)
        if not requested:
            self._refuse("no_fields", claims, rid, requested, via)
        if not claims.covers(requested):
            extra = sorted(set(requested) - set(claims.fields))
            self._refuse("fields_not_permitted", claims, rid, requested, via, detail=",".join(extra)[:200])
        if purpose is not None and purpose != claims.purpose:
            self._refuse("wrong_purpose", claims, rid, requested, via)
        known = set(self.table.table.c.keys())
        unknown = [f for f in requested if f not in known or f == "ztcp_dek" or f.endswith("_bidx")]
        if unknown:
            raise KeyMgmtError(f"unknown field(s) for {spec.table}: {', '.join(sorted(unknown))}")
        row = self.table.fetch_row(self.pk_value(record_id))
        if row is None:
            self._refuse("record_not_found", claims, rid, requested, via)
        if spec.citizen_ref_column is not None and row[spec.citizen_ref_column] != claims.citizen_ref:
            self._refuse("wrong_citizen", claims, rid, requested, via)

        protected = [f for f in requested if f in spec.columns]
        if protected and row[STATE_COLUMN]:
            # Unwrap the DEK before recording: if the key provider is down we fail closed here,
            # without a ledger entry claiming a read that never happened.
            try:
                self.table.envelope.prefetch([row[STATE_COLUMN]])
            except ProviderUnavailable:
                self._audit_refusal("key_provider_unavailable", claims)
                raise

        try:
            event = self._event("pii.read", claims, rid, requested, via, effect="permit")
        except ValueError as exc:  # the event schema refused something (e.g. an id shaped like a national ID)
            self._refuse("provenance_rejected", claims, rid, requested, via, detail=type(exc).__name__,
                         record_denied=False)
        try:
            self.recorder.record(event)
        except Exception as exc:  # noqa: BLE001 - any ledger failure must fail closed
            self._refuse("ledger_unavailable", claims, rid, requested, via, detail=type(exc).__name__,
                         record_denied=False)

        values: dict[str, str | None] = {f: row[f] for f in requested if f not in spec.columns}
        values.update(self.table._decrypt_row(row, protected))
        return apply_masks({f: values[f] for f in requested}, claims.obligations)

    def search(
        self,
        token: str | None,
        column: str,
        value: str,
        *,
        purpose: str | None = None,
        via: dict[str, str] | None = None,
        now: float | None = None,
    ) -> list[object]:
        """Primary keys of the token's citizen's records whose ``column`` equals ``value`` (blind index).

        An exact lookup reveals that a citizen is on file, so it is a decision-gated ``pii.search``
        event like a read: the token must be a ``search`` permit for this dataset naming ``column``,
        the event is recorded before the answer, and only rows of the token's citizen are returned.
        """
        spec = self.table.spec
        if not token:
            self._refuse("missing_token", None, "", (column,), via)
        try:
            claims = pdp.verify_decision_token(token, self.verifier, now=now)
        except pdp.DecisionTokenError as exc:
            self._refuse(exc.reason, None, "", (column,), via)
        if claims.action not in SEARCH_ACTIONS:
            self._refuse("wrong_action", claims, "", (column,), via)
        if claims.dataset != spec.dataset:
            self._refuse("wrong_dataset", claims, "", (column,), via)
        if not claims.covers([column]):
            self._refuse("fields_not_permitted", claims, "", (column,), via, detail=column)
        if purpose is not None and purpose != claims.purpose:
            self._refuse("wrong_purpose", claims, "", (column,), via)
        pks = self.table.find(column, value)
        if spec.citizen_ref_column is not None:
            pks = [pk for pk in pks
                   if (row := self.table.fetch_row(pk)) is not None
                   and row[spec.citizen_ref_column] == claims.citizen_ref]
        try:
            event = self._event("pii.search", claims, None, (column,), via, effect="permit")
        except ValueError as exc:
            self._refuse("provenance_rejected", claims, "", (column,), via, detail=type(exc).__name__,
                         record_denied=False)
        try:
            self.recorder.record(event)
        except Exception as exc:  # noqa: BLE001 - any ledger failure must fail closed
            self._refuse("ledger_unavailable", claims, "", (column,), via, detail=type(exc).__name__,
                         record_denied=False)
        return pks

    def pk_value(self, record_id: object) -> object:
        """The primary-key value for ``record_id`` as the table types it (an int column gets an int)."""
        col = self.table.table.c[self.table.spec.pk]
        try:
            if col.type.python_type is int and not isinstance(record_id, int):
                return int(str(record_id))
        except (NotImplementedError, ValueError):
            pass
        return record_id

    def _event(self, type_: str, claims: pdp.DecisionClaims | None, rid: str | None, fields: Sequence[str],
               via: dict[str, str] | None, effect: str) -> ProvenanceEvent:
        ev: dict[str, Any] = {
            "type": type_,
            "actor": {"id": claims.subject if claims else "unknown", "type": "staff"},
            "via": {"system": self.system, **(via or {})},
            "dataset": self.table.spec.dataset,
            "fields": list(fields),
            "effect": effect,
        }
        if rid:
            ev["record_id"] = rid
        if claims is not None:
            ev["citizen_ref"] = claims.citizen_ref
            ev["decision_id"] = claims.decision_id
            if claims.purpose:
                ev["purpose"] = {"code": claims.purpose}
                if claims.case_id:
                    ev["purpose"]["case_id"] = claims.case_id
        return self.event_factory(**ev)

    def _refuse(self, reason: str, claims: pdp.DecisionClaims | None, rid: str, fields: Sequence[str],
                via: dict[str, str] | None, *,
                detail: str = "", record_denied: bool = True) -> NoReturn:
        if record_denied:
            # The refusal stands whether or not the ledger took the pii.denied event.
            with contextlib.suppress(Exception):
                self.recorder.record(self._event("pii.denied", claims, rid, fields, via, effect="deny"))
        self._audit_refusal(reason, claims)
        raise DecryptRefused(reason, detail)

    def _audit_refusal(self, reason: str, claims: pdp.DecisionClaims | None) -> None:
        if self.audit is not None:
            with contextlib.suppress(KeyMgmtError):
                self.audit.record(
                    type="key.decrypt_refused",
                    actor=claims.subject if claims else "unknown",
                    key_name=self.table.envelope.kek_name,
                    dataset=self.table.spec.dataset,
                    count=1,
                    reason=reason,
                    decision_id=claims.decision_id if claims else None,
                )
