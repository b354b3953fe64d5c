"""Decrypt many records under one batch decision: the government-exchange path (exchange/).

The guarantee is the gate's (gate.py), per record: no plaintext without a decision and a record.

1. :meth:`BatchReader.open` verifies the batch decision token once — a ``disclose`` permit for this
   dataset and recipient, covering the fields — and keeps its claims;
2. :meth:`BatchReader.fetch` finds rows by the table's blind index (national IDs) or by its
   ``citizen_ref`` column, returning stored ciphertext only;
3. :meth:`BatchReader.release` records every citizen's provenance event durably
   (``recorder.record_many``: one fsync'd transaction per chunk) and only then decrypts that chunk.

If the ledger cannot record, nothing of the chunk is decrypted. The decision is checked when a batch
(or its resumption) starts; the batch's events all name it, and a batch resumed later needs a new
decision (an agreement suspended meanwhile stops the rest).
"""

from __future__ import annotations

import binascii
import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

import pdp
from keymgmt.audit import KeyAuditLog
from keymgmt.ciphertext import DEK_ID_LEN, FORMAT_VERSION, NONCE_LEN, PREFIX, aad_prefix
from keymgmt.errors import CiphertextError, DecryptRefused, KeyMgmtError
from keymgmt.table import STATE_COLUMN, EncryptedTable

_IN_CHUNK = 900  # below SQLite's default 999 bound parameters
_HEADER = 1 + DEK_ID_LEN
_NONCE = _HEADER + NONCE_LEN
_MIN_RAW = _NONCE + 16


class BatchRecorder(Protocol):
    def record_many(self, events: Sequence[Any]) -> list[Any]: ...


@dataclass(frozen=True, eq=False)
class Recorded:
    """Rows whose provenance events are durable, with the ledger's receipts (see BatchReader.record)."""

    grant: BatchGrant
    rows: tuple[dict[str, Any], ...]
    receipts: list[Any]


@dataclass(frozen=True, eq=False)  # identity: only the grant objects open() made are valid
class BatchGrant:
    """A verified batch decision: what this batch may release, to whom."""

    claims: pdp.DecisionClaims
    fields: tuple[str, ...]


class BatchReader:
    def __init__(self, table: EncryptedTable, verifier: pdp.DecisionTokenVerifier, recorder: BatchRecorder,
                 audit: KeyAuditLog | None = None, *, actor: str = "exchange") -> None:
        self.table = table
        self.verifier = verifier
        self.recorder = recorder
        self.audit = audit
        self.actor = actor
        self._grants: set[BatchGrant] = set()  # the objects themselves: an id could be reused once freed
        self._recorded: set[Recorded] = set()
        self._lock = threading.Lock()
        self._indexed = False

    def open(self, token: str | None, fields: Sequence[str], recipient: dict[str, str],
             now: float | None = None) -> BatchGrant:
        """Verify the batch decision token; :class:`DecryptRefused` if it does not allow this batch."""
        spec = self.table.spec
        if not token:
            self._refused("missing_token", None)
        try:
            claims = pdp.verify_decision_token(token, self.verifier, now=now)
        except pdp.DecisionTokenError as exc:
            self._refused(exc.reason, None)
        if claims.action != "disclose":
            self._refused("wrong_action", claims)
        if claims.dataset != spec.dataset:
            self._refused("wrong_dataset", claims)
        if claims.citizen_ref is not None or claims.record_id is not None:
            self._refused("not_a_batch_decision", claims)  # a one-record permit does not open a batch
        if (claims.recipient or {}).get("type") != recipient.get("type") or \
                (claims.recipient or {}).get("id") != recipient.get("id"):
            self._refused("wrong_recipient", claims)
        if not fields or not claims.covers(fields):
            self._refused("fields_not_permitted", claims)
        known = set(self.table.table.c.keys())
        unknown = [f for f in fields if f not in known or f == STATE_COLUMN or f.endswith("_bidx")]
        if unknown:
            raise KeyMgmtError(f"unknown field(s) for {spec.table}: {', '.join(sorted(unknown))}")
        grant = BatchGrant(claims, tuple(fields))
        self._grants.add(grant)
        return grant

    def ensure_citizen_index(self) -> None:
        """Lookups by citizen_ref need an index on that column (created once, if missing)."""
        col = self.table.spec.citizen_ref_column
        if col is None or self._indexed:
            return
        q = self.table.engine.dialect.identifier_preparer.quote
        with self.table.engine.begin() as c:
            c.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {q('ix_' + self.table.spec.table + '_' + col)} "
                              f"ON {q(self.table.spec.table)} ({q(col)})"))
        self._indexed = True

    def fetch(self, grant: BatchGrant, *, citizen_refs: Iterable[str] = (),
              blind_indexes: Iterable[str] = (), column: str | None = None) -> list[dict[str, Any]]:
        """Stored rows (ciphertext) whose ``citizen_ref`` is one of ``citizen_refs`` or whose blind
        index on ``column`` is one of ``blind_indexes``; only the granted fields and the keys."""
        self._check(grant)
        spec, t = self.table.spec, self.table.table
        cols = [t.c[spec.pk], t.c[STATE_COLUMN], *(t.c[f] for f in grant.fields if f != spec.pk)]
        if spec.citizen_ref_column:
            cols.append(t.c[spec.citizen_ref_column])
        out: list[dict[str, Any]] = []
        lookups: list[tuple[Any, list[str]]] = []
        refs = list(citizen_refs)
        if refs:
            if spec.citizen_ref_column is None:
                raise KeyMgmtError(f"{spec.table} has no citizen_ref column: look records up by national ID")
            self.ensure_citizen_index()
            lookups.append((t.c[spec.citizen_ref_column], refs))
        bidx = list(blind_indexes)
        if bidx:
            if column is None or column not in spec.blind_index:
                raise KeyMgmtError(f"{spec.table} has no blind index on {column!r}")
            bcol = t.c[spec.bidx_column(column)]
            cols.append(bcol)
            lookups.append((bcol, bidx))
        names = [c.name for c in cols]
        with self.table.engine.connect() as c:
            for col, values in lookups:
                stmt = sa.select(*cols).where(col.in_(sa.bindparam("v", expanding=True)))
                for i in range(0, len(values), _IN_CHUNK):
                    rows = c.execute(stmt, {"v": values[i:i + _IN_CHUNK]}).fetchall()  # one DBAPI call
                    out.extend(dict(zip(names, r, strict=True)) for r in rows)
        return out

    def indexes_for(self, column: str, value: str) -> list[str]:
        """The blind-index values of ``value`` under every trusted key version (what fetch looks for)."""
        if self.table.blind is None:
            raise KeyMgmtError(f"{self.table.spec.table} has no blind index")
        return [bi.compute(self.table.dataset, column, value) for bi in self.table.blind.trusted()]

    def indexers(self, column: str) -> list[Callable[[str], str]]:
        """Fast ``value -> index`` per trusted blind-index key version (bulk staging)."""
        if self.table.blind is None:
            raise KeyMgmtError(f"{self.table.spec.table} has no blind index")
        return [bi.column_indexer(self.table.dataset, column) for bi in self.table.blind.trusted()]

    def release(self, grant: BatchGrant, rows: Sequence[dict[str, Any]],
                events: Sequence[Any]) -> tuple[list[dict[str, str | None]], list[Any]]:
        """Record ``events`` durably (one per row, in one transaction), then decrypt ``rows``' granted
        fields; returns the values and the recorder's receipts. A ledger failure raises
        :class:`DecryptRefused` and nothing is decrypted."""
        recorded = self.record(grant, rows, events)
        return self.decrypt(grant, recorded), recorded.receipts

    def record(self, grant: BatchGrant, rows: Sequence[dict[str, Any]], events: Sequence[Any]) -> Recorded:
        """The first half of :meth:`release`, so a pipeline can record chunk k+1 while it decrypts
        chunk k: one durable transaction for ``events`` (one per row). Only what this returns can be
        decrypted (:meth:`decrypt`)."""
        self._check(grant)
        if len(events) != len(rows):
            raise KeyMgmtError("one provenance event per released row is required")
        if not rows:
            return self._seal(Recorded(grant, tuple(rows), []))
        # Unwrap the data keys first: a key provider that is down fails before anything is recorded.
        self.table.envelope.prefetch({r[STATE_COLUMN] for r in rows if r[STATE_COLUMN]})
        try:
            receipts = self.recorder.record_many(events)
        except Exception as exc:  # noqa: BLE001 - any ledger failure must fail closed
            self._refused("ledger_unavailable", grant.claims, detail=type(exc).__name__, count=len(rows))
        return self._seal(Recorded(grant, tuple(rows), list(receipts)))

    def decrypt(self, grant: BatchGrant, recorded: Recorded) -> list[dict[str, str | None]]:
        """The granted fields of rows whose events :meth:`record` made durable (and only those)."""
        self._check(grant)
        with self._lock:
            if recorded not in self._recorded or recorded.grant is not grant:
                raise KeyMgmtError("these rows were not recorded by this reader under this grant")
            self._recorded.discard(recorded)  # decrypted once
        return self._decrypt(grant, recorded.rows)

    def _seal(self, recorded: Recorded) -> Recorded:
        with self._lock:
            self._recorded.add(recorded)
        return recorded

    def _decrypt(self, grant: BatchGrant, rows: Sequence[dict[str, Any]]) -> list[dict[str, str | None]]:
        """The granted fields of ``rows``: the envelope's decryption (ciphertext.py's format and AAD)
        with the per-call lookups hoisted out of the loop — a batch decrypts millions of fields."""
        spec = self.table.spec
        env = self.table.envelope
        dataset = spec.dataset
        protected = [(f, aad_prefix(dataset, f)) for f in grant.fields if f in spec.columns]
        plain = [f for f in grant.fields if f not in spec.columns]
        aeads: dict[str, Any] = {}
        a2b = binascii.a2b_base64
        out = []
        for r in rows:
            pk = r[spec.pk]
            values: dict[str, str | None] = {f: r[f] for f in plain}
            dek = r[STATE_COLUMN]
            if dek is None:
                if protected:
                    raise KeyMgmtError(f"a row of {spec.table} is not encrypted yet")
            else:
                hit = aeads.get(dek)
                if hit is None:  # _aead_for checks the key is this dataset's
                    hit = aeads[dek] = (env._aead_for(dek, dataset), bytes.fromhex(dek))
                aead, dek_id = hit
                pkb = str(pk).encode()
                tail = len(pkb).to_bytes(4, "big") + pkb
                for f, prefix in protected:
                    v = r[f]
                    if v is None:
                        values[f] = None
                        continue
                    try:
                        raw = a2b(v[4:], strict_mode=True)
                    except (binascii.Error, ValueError, TypeError):
                        raw = b""
                    if not (isinstance(v, str) and v.startswith(PREFIX)) or len(raw) < _MIN_RAW or \
                            raw[0] != FORMAT_VERSION or raw[1:_HEADER] != dek_id:
                        raise CiphertextError(f"a protected value of {dataset}.{f} is malformed or not under "
                                              "its row's data key")
                    try:
                        aad = raw[:_HEADER] + prefix + tail
                        values[f] = aead.decrypt(raw[_HEADER:_NONCE], raw[_NONCE:], aad).decode()
                    except InvalidTag:
                        raise CiphertextError(f"a protected value of {dataset}.{f} fails authentication "
                                              "(tampered, or copied from another row/column)") from None
            out.append(values)
        return out

    def audited(self, grant: BatchGrant, count: int) -> None:
        """One ``key.bulk_decrypt`` audit event for a batch run (not one per chunk: a 23 M batch would
        otherwise write 23,000 of them)."""
        self._check(grant)
        if self.audit is not None and count:
            self.audit.record(type="key.bulk_decrypt", actor=grant.claims.subject,
                              key_name=self.table.envelope.kek_name, dataset=self.table.spec.dataset,
                              count=count, reason="exchange", decision_id=grant.claims.decision_id)

    def _check(self, grant: BatchGrant) -> None:
        if grant not in self._grants:
            raise KeyMgmtError("this batch grant was not opened by this reader")

    def _refused(self, reason: str, claims: Any, *, detail: str = "", count: int = 1) -> NoReturn:
        if self.audit is not None:
            with contextlib.suppress(KeyMgmtError):
                self.audit.record(type="key.decrypt_refused", actor=claims.subject if claims else self.actor,
                                  key_name=self.table.envelope.kek_name, dataset=self.table.spec.dataset,
                                  count=count, reason=reason, decision_id=claims.decision_id if claims else None)
        raise DecryptRefused(reason, detail)
