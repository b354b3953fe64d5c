"""The exchange service: outbound batches, receipts, overdue receipts, inbound data, late time-stamps.

**A batch** (``send``), in order, each step fail-closed:

1. the agreement from the signed register (unknown, suspended or expired: refused, nothing read);
   its keys (an agreement registering no keys cannot receive data);
2. one PDP decision for the batch (action ``disclose``, resource type ``batch``, recipient the
   agency: exchange.rego and disclosure.rego) — fields outside the agreement are withheld — and the
   batch gate (:class:`keymgmt.BatchReader`) opened with its token;
3. the input checked and staged whole (a malformed line: its number, nothing sent; duplicates:
   their line numbers, nothing sent);
4. per chunk: rows found by blind index or citizen_ref; every citizen's ``pii.disclose`` recorded
   durably (one transaction per chunk); only then decrypted; sealed to the agency as one AEAD segment;
   fsync'd; the job's progress committed. kill -9 anywhere resumes at the last committed segment;
5. the transfer record (contracts.exchange.TransferRecord) signed (JWS), its signature time-stamped
   (RFC 3161), the ``exchange.transfer`` event recorded with the record's digest, a checkpoint
   signed and the event's inclusion proof written beside the payload.

The output directory holds everything an agency or auditor needs offline (``ztcp exchange verify``):
``payload.ztcp``, ``transfer.json``, ``transfer.jws``, ``transfer.tsr``, ``ledger.json``,
``keys.json`` and, once the agency acknowledges, ``receipt.jws``. ztcp keeps the record, not the payload.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import uuid_utils
from pydantic import ValidationError

import contracts
import keymgmt
from contracts.decision import Context, Decision, DecisionRequest, Device
from contracts.exchange import (
    INBOUND_TYPE,
    RECEIPT_TYPE,
    TRANSFER_TYPE,
    InboundClaims,
    PayloadEncryption,
    ReceiptClaims,
    SeqRange,
    TransferRecord,
)
from contracts.national_id import CITIZEN_REF_PATTERN
from exchange import agreements as register
from exchange import inputs
from exchange.crypto import (
    SealedWriter,
    Signer,
    jws_payload_unverified,
    jws_signature,
    load_public_jwk,
    public_jwk,
    seal_header,
    sha256_file,
    sign_jws,
    thumbprint,
    verify_jws,
)
from exchange.errors import ExchangeError, ExchangeInputError, ExchangeIntegrityError, ExchangeRefused
from exchange.store import ExchangeStore, Transfer
from pdp.point import DecisionPoint
from pdp.tokens import DecisionTokenVerifier
from provenance import Ledger, Receipt, Recorder
from provenance.store import Prepared
from provenance.timestamp import TsaClient, TsaVerifier

log = logging.getLogger("ztcp.exchange")

SYSTEM = "ztcp-exchange"  # via.system of every exchange event
CALLER = "ztcp-exchange"  # how the decision log names this PEP
PAYLOAD, RECORD, SIGNATURE, STAMP, PROOF, KEYS, RECEIPT = (
    "payload.ztcp", "transfer.json", "transfer.jws", "transfer.tsr", "ledger.json", "keys.json", "receipt.jws")
MARKER = ".ztcp-transfer"  # the transfer id, so the same --output resumes the same job
_REF = re.compile(CITIZEN_REF_PATTERN)
_STATE = keymgmt.table.STATE_COLUMN


@dataclass(frozen=True)
class Operator:
    """Who runs the batch (a verified subject token), from which device and context."""

    id: str
    roles: tuple[str, ...]
    unit: str | None
    token: str = field(repr=False)
    device: Device = field(default_factory=lambda: Device(id="unknown"))
    context: Context = field(default_factory=lambda: Context(network_zone="internal", channel="exchange"))

    def actor(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"id": self.id, "type": "staff", "roles": list(self.roles)}
        if self.unit:
            actor["unit"] = self.unit
        return actor


@dataclass
class ExchangeConfig:
    tsa_policy: str = "later"  # refuse | later: what to do when the TSA cannot be reached
    receipt_hours: float = 24.0
    chunk: int = 2000  # records per sealed segment and per ledger transaction
    kek: str = keymgmt.DEFAULT_KEK


class ExchangeService:
    def __init__(self, *, point: DecisionPoint, recorder: Recorder, ledger: Ledger,
                 readers: Callable[[str], keymgmt.ProtectedReader | None],
                 decision_verifier: DecisionTokenVerifier, key_provider: keymgmt.KeyProvider,
                 blind_index_key: Callable[[], bytes], registers: Callable[[], dict[str, Any]], signer: Signer,
                 store: ExchangeStore, tsa: TsaClient | None = None, tsa_verifier: TsaVerifier | None = None,
                 config: ExchangeConfig | None = None, clock: Callable[[], float] = time.time,
                 classification: Callable[[str], str | None] | None = None,
                 key_audit: keymgmt.KeyAuditLog | None = None) -> None:
        self.point = point
        self.recorder = recorder
        self.ledger = ledger
        self.readers = readers
        self.decision_verifier = decision_verifier
        self.key_provider = key_provider
        self.blind_index_key = blind_index_key
        self.registers = registers
        self.signer = signer
        self.store = store
        self.tsa = tsa
        self.tsa_verifier = tsa_verifier
        self.config = config or ExchangeConfig()
        self.clock = clock
        self.classification = classification
        self.key_audit = key_audit

    # -- helpers ------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def agreement(self, agreement_id: str) -> register.Agreement:
        return register.find((self.registers() or {}).get("agreements"), agreement_id)

    def all_agreements(self) -> list[register.Agreement]:
        return register.agreements((self.registers() or {}).get("agreements"))

    def _record(self, **fields: Any) -> Receipt:
        fields.setdefault("time", self.now())
        fields.setdefault("via", {"system": SYSTEM, "channel": "exchange"})
        return self.recorder.record(contracts.ProvenanceEvent(**fields))

    def _decide(self, op: Operator, agreement: register.Agreement, fields: list[str]) -> Decision:
        resource: dict[str, Any] = {"type": "batch", "dataset": agreement.dataset, "fields": fields}
        cls = self.classification(agreement.dataset) if self.classification else None
        if cls in ("public", "internal", "personal", "special"):
            resource["classification"] = cls
        try:
            request = DecisionRequest.model_validate({
                "subject_token": op.token, "device": op.device.model_dump(), "context": op.context.model_dump(),
                "resource": resource, "action": "disclose",
                "purpose": {"code": agreement.purpose, "legal_basis": agreement.legal_basis},
                "recipient": {"type": "agency", "id": agreement.agency}})
        except ValidationError as exc:
            loc = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "request"
            raise ExchangeInputError(f"cannot build the batch decision request ({loc} invalid)") from None
        decision = self.point.decide(request, caller=CALLER)
        if decision.effect != "permit" or not decision.token:
            what = "step-up required" if decision.effect == "step_up" else "denied by policy"
            raise ExchangeRefused(f"{what}: {', '.join(decision.reasons)}; nothing sent", list(decision.reasons))
        return decision

    def _reader(self, dataset: str) -> keymgmt.BatchReader:
        reader = self.readers(dataset)
        if reader is None:
            raise ExchangeRefused(f"no protected dataset {dataset!r} in this installation", ["unknown_dataset"])
        return keymgmt.BatchReader(reader.table, self.decision_verifier, self.recorder, self.key_audit)

    # -- outbound -----------------------------------------------------------------------------------
    def send(self, op: Operator, agreement_id: str, input_path: Path, output_dir: Path, *,
             fields: list[str] | None = None, fmt: str | None = None,
             progress: Callable[[int, int], None] | None = None,
             stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Run (or resume, for the same ``output_dir``) one batch; returns its summary."""
        out = Path(output_dir).expanduser().resolve()
        marker = out / MARKER
        if marker.exists():
            t = self.store.get(marker.read_text().strip())
            if t is not None and t.state == "complete":
                raise ExchangeInputError(f"{out} already holds the completed transfer {t.transfer_id}; "
                                         "choose a new --output")
            if t is not None:
                if t.agreement_id != agreement_id:
                    raise ExchangeInputError(f"{out} holds an unfinished transfer under agreement "
                                             f"{t.agreement_id}, not {agreement_id}")
                if sha256_file(input_path)[0].hexdigest() != t.input_sha256:
                    raise ExchangeInputError(f"{input_path} changed since transfer {t.transfer_id} started; "
                                             "resume with the same input")
                return self._run(t, op, None, progress, stop, resumed=True)
        if out.exists() and any(out.iterdir()):
            raise ExchangeInputError(f"--output {out} must be a new or empty directory")
        agreement = self.agreement(agreement_id)
        problem = agreement.problem(self.now())
        if problem:
            raise ExchangeRefused(f"agreement {agreement.id} is {agreement.state(self.now())}: nothing sent", [problem])
        recipient_key, receipt_key = agreement.encryption_key(), agreement.receipt_key()
        batch = self._reader(agreement.dataset)
        wanted = list(dict.fromkeys(fields or agreement.fields))
        spec = batch.table.spec
        names = {c.name for c in batch.table.table.c}
        readable = {c for c in names if not c.endswith("_bidx")} - {_STATE, spec.citizen_ref_column}
        unknown = sorted(set(wanted) - readable)
        if unknown:
            raise ExchangeInputError(f"--fields: unknown field(s) in {agreement.dataset}: {', '.join(unknown)}")
        if not wanted:
            raise ExchangeInputError("--fields: no fields to send")
        transfer_id = "xfer_" + uuid_utils.uuid7().hex
        if self.tsa is not None and self.config.tsa_policy == "refuse":
            self._probe_tsa(self.tsa, transfer_id)
        decision = self._decide(op, agreement, wanted)
        grant = batch.open(decision.token, decision.permitted_fields, {"type": "agency", "id": agreement.agency},
                           now=self.clock())
        withheld = [f for f in wanted if f not in set(decision.permitted_fields)]
        # The whole input is checked before anything is read: a bad line means nothing is sent. A
        # national ID becomes its citizen_ref (HMAC under the blind-index key), looked up through the
        # table's citizen_ref column (indexed once); a table without one is searched through its
        # national_id blind index (one more HMAC per line, under every trusted key version).
        id_indexes = None
        if spec.citizen_ref_column is None:
            if "national_id" not in spec.blind_index:
                raise ExchangeRefused(f"{agreement.dataset} can be looked up neither by citizen_ref nor by "
                                      "national ID")
            indexers = batch.indexers("national_id")

            def id_indexes(value: str) -> list[str]:
                return [f(value) for f in indexers]
        key = self.blind_index_key()
        staged = ((c.line, c.citizen_ref, bidx) for c, bidx in inputs.parse(Path(input_path), key, fmt, id_indexes))
        lines = self.store.stage(transfer_id, staged)
        try:
            if lines == 0:
                raise ExchangeInputError("the input names no citizen; nothing sent")
            dups = self.store.duplicates(transfer_id)
            if dups:
                pairs = ", ".join(f"{b} repeats {a}" for a, b in dups)
                raise ExchangeInputError(f"duplicate citizens in the input (line {pairs}); nothing sent")
        except ExchangeError:
            self.store.unstage(transfer_id)
            raise
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        started = self.now()
        t = Transfer(transfer_id=transfer_id, direction="outbound", agreement_id=agreement.id, agency=agreement.agency,
                     dataset=agreement.dataset, state="staged", operator=op.id, created_at=self.clock(),
                     output_dir=str(out), input_sha256=sha256_file(input_path)[0].hexdigest(),
                     receipt_key=json.dumps(agreement.receipt_jwk),
                     job={"lines": lines, "done_lines": 0, "next_line": 0, "segments": 0, "offset": 0,
                          "released": 0, "not_found": 0, "seqs": [], "decision_ids": [], "fields": wanted,
                          "withheld": withheld, "started_at": started.isoformat(),
                          "recipient_key": public_jwk(recipient_key), "receipt_kid": thumbprint(receipt_key),
                          "legal_basis": agreement.legal_basis, "purpose": agreement.purpose,
                          "receipt_hours": agreement.receipt_hours or self.config.receipt_hours})
        self.store.insert(t)
        _write_new(marker, transfer_id.encode())
        return self._run(t, op, (batch, grant, decision), progress, stop, resumed=False)

    @staticmethod
    def _probe_tsa(tsa: TsaClient, transfer_id: str) -> None:
        from provenance.timestamp import TsaUnavailable

        try:
            tsa.stamp(b"ztcp-exchange-probe " + transfer_id.encode())
        except TsaUnavailable as exc:
            raise ExchangeRefused(f"{exc}; nothing sent (ZTCP_EXCHANGE_TSA_UNAVAILABLE=refuse)",
                                  ["tsa_unavailable"]) from None

    def _run(self, t: Transfer, op: Operator, opened: tuple | None, progress: Callable[[int, int], None] | None,
             stop: Callable[[], bool] | None, *, resumed: bool) -> dict[str, Any]:
        job = t.job
        agreement = self.agreement(t.agreement_id)
        if opened is None:  # resuming: the agreement and the policy are asked again, now
            batch = self._reader(t.dataset or agreement.dataset)
            problem = agreement.problem(self.now())
            if problem:
                raise ExchangeRefused(f"agreement {agreement.id} is {agreement.state(self.now())}: the rest of "
                                      f"transfer {t.transfer_id} is not sent", [problem])
            decision = self._decide(op, agreement, job["fields"])
            if set(decision.permitted_fields) != set(job["fields"]) - set(job["withheld"]):
                raise ExchangeRefused(f"the policy now permits other fields than when transfer {t.transfer_id} "
                                      "started; start a new transfer", ["fields_changed"])
            grant = batch.open(decision.token, decision.permitted_fields, {"type": "agency", "id": agreement.agency},
                               now=self.clock())
        else:
            batch, grant, decision = opened
        if decision.decision_id not in job["decision_ids"]:
            job["decision_ids"].append(decision.decision_id)
        fields = [f for f in job["fields"] if f not in set(job["withheld"])]
        out = Path(t.output_dir or ".")
        payload = out / PAYLOAD
        recipient = load_public_jwk(job["recipient_key"], "X25519", "recipient key")
        if "header" not in job:
            cek, wrapped = self.key_provider.generate_datakey(self.config.kek)
            header = seal_header(transfer_id=t.transfer_id, agreement_id=t.agreement_id, recipient=recipient, cek=cek)
            with open(payload, "wb") as head_out:
                head_out.write(header)
                head_out.flush()
                os.fsync(head_out.fileno())
            job.update(header=base64.b64encode(header).decode(), wrapped_cek=wrapped, offset=len(header))
            self.store.update(t.transfer_id, job=job, state="running")
        header = base64.b64decode(job["header"])
        cek = self.key_provider.unwrap(self.config.kek, job["wrapped_cek"])
        hasher, have = sha256_file(payload, job["offset"])
        if have != job["offset"]:
            raise ExchangeIntegrityError(f"{payload} is shorter than its journal says: it was changed outside ztcp")
        events = _DisclosureEvents(
            type="pii.disclose", actor=op.actor(), via={"system": SYSTEM, "channel": "exchange"},
            dataset=agreement.dataset, fields=fields,
            purpose={"code": job["purpose"], "legal_basis": job["legal_basis"]}, decision_id=decision.decision_id,
            effect="permit", recipient={"type": "agency", "id": agreement.agency, "channel": "exchange"},
            exchange={"agency": agreement.agency, "agreement_id": agreement.id, "transfer_id": t.transfer_id})
        batch.recorder = _LedgerAppender(self.ledger)
        spec = batch.table.spec
        ref_col = spec.citizen_ref_column
        bcol = spec.bidx_column("national_id") if "national_id" in spec.blind_index else None
        started = time.perf_counter()
        released_now = 0
        with open(payload, "r+b") as f:
            f.truncate(job["offset"])  # a segment written after the last commit is rewritten
            f.seek(job["offset"])
            writer = SealedWriter(header, cek, counter=job["segments"])

            def load(c: list) -> tuple:
                # In the read-ahead thread: look chunk k+1 up, build its events and record them durably
                # (SQLite's fsync'd transaction runs without the GIL) while chunk k is decrypted and
                # sealed. A crash may leave up to two chunks recorded but not sent; the resumed job
                # records them again as duplicates (same event ids) and sends them: over-recording is
                # the safe side, decryption before recording is impossible (keymgmt.BatchReader).
                lines, records, prepared, missing = self._chunk(batch, grant, c, events, t.transfer_id,
                                                                ref_col, bcol)
                return lines, batch.record(grant, records, prepared), missing

            for chunk, (lines, recorded, missing) in self._read_ahead(
                    self.store.iter_staged(t.transfer_id, job["next_line"], self.config.chunk), load):
                if stop is not None and stop():
                    raise ExchangeError(f"transfer {t.transfer_id} stopped; run the same command to resume")
                values, receipts, records = batch.decrypt(grant, recorded), recorded.receipts, recorded.rows
                dumps = orjson.dumps
                blob = b"".join(dumps({"line": line, **v}) + b"\n" for line, v in zip(lines, values, strict=True))
                seg = writer.segment(blob) if blob else b""
                if seg:
                    f.write(seg)
                    f.flush()
                    os.fsync(f.fileno())
                    hasher.update(seg)
                job["offset"] += len(seg)
                job["segments"] = writer.counter
                job["next_line"] = chunk[-1][0]
                job["done_lines"] += len(chunk)
                job["released"] += len(records)
                job["not_found"] += missing
                job["seqs"] = _merge_seqs(job["seqs"], [r.seq for r in receipts])
                self.store.update(t.transfer_id, job=job, state="running")
                released_now += len(records)
                if progress is not None:
                    progress(job["done_lines"], job["lines"])
            trailer = writer.segment(orjson.dumps({"transfer_id": t.transfer_id, "records": job["released"]}),
                                     last=True)
            f.write(trailer)
            f.flush()
            os.fsync(f.fileno())
            hasher.update(trailer)
            payload_bytes = job["offset"] + len(trailer)
        batch.audited(grant, released_now)
        return self._complete(t, agreement, job, hasher.hexdigest(), payload_bytes, op,
                              time.perf_counter() - started, resumed)

    @staticmethod
    def _read_ahead(chunks: Iterator[list], load: Callable[[list], tuple]) -> Iterator[tuple[list, tuple]]:
        """Chunk k+1 is looked up and its events built in a second thread while chunk k is recorded,
        decrypted and sealed: the ledger's fsync'd transaction and the database reads run with the
        GIL released, so the two overlap (nothing of chunk k+1 is decrypted before its own record)."""
        with ThreadPoolExecutor(1, thread_name_prefix="ztcp-exchange-read") as pool:
            nxt = next(chunks, None)
            pending = pool.submit(load, nxt) if nxt is not None else None
            while pending is not None and nxt is not None:
                chunk, loaded = nxt, pending.result()
                nxt = next(chunks, None)
                pending = pool.submit(load, nxt) if nxt is not None else None
                yield chunk, loaded

    def _chunk(self, batch: Any, grant: Any, chunk: list[tuple[int, str, str | None]], factory: _DisclosureEvents,
               transfer_id: str, ref_col: str | None, bcol: str | None) -> tuple[list[int], list, list, int]:
        """One chunk's rows in input order: their input lines, the rows, one ``pii.disclose`` event
        each, and how many lines found no record."""
        by_ref = {ref: line for line, ref, bidx in chunk if bidx is None}
        by_bidx: dict[str, int] = {}
        for line, _ref, bidx in chunk:
            if bidx is not None:
                for candidate in bidx.split(" "):
                    by_bidx[candidate] = line
        rows = batch.fetch(grant, citizen_refs=list(by_ref), blind_indexes=list(by_bidx),
                           column="national_id" if by_bidx else None)
        ref_of = {line: ref for line, ref, _ in chunk}
        matched: list[tuple[int, Any, dict]] = []
        seen: set[tuple[int, Any]] = set()
        pk = batch.table.spec.pk
        for r in rows:
            hit = by_bidx.get(r.get(bcol)) if bcol and r.get(bcol) in by_bidx else by_ref.get(r.get(ref_col))
            if hit is None:
                continue
            if ref_col is not None and r.get(ref_col) != ref_of[hit]:
                log.warning("transfer %s: a row's citizen_ref does not match its blind index; skipped", transfer_id)
                continue
            if (hit, r[pk]) in seen:
                continue
            seen.add((hit, r[pk]))
            matched.append((hit, r[pk], r))
        matched.sort(key=lambda m: (m[0], str(m[1])))
        found_lines = {m[0] for m in matched}
        make = factory.for_time(self.now())
        events = []
        for line, key, _r in matched:
            rid = contracts.screen_text(str(key))
            events.append(make(ref_of[line], _event_id(transfer_id, line, rid), rid))
        return [m[0] for m in matched], [m[2] for m in matched], events, len(chunk) - len(found_lines)

    def _complete(self, t: Transfer, agreement: register.Agreement, job: dict, payload_sha: str, payload_bytes: int,
                  op: Operator, seconds: float, resumed: bool) -> dict[str, Any]:
        out = Path(t.output_dir or ".")
        record = TransferRecord(
            transfer_id=t.transfer_id, agreement_id=t.agreement_id, agency=t.agency, dataset=t.dataset or "",
            legal_basis=job["legal_basis"], purpose=job["purpose"],
            fields=[f for f in job["fields"] if f not in set(job["withheld"])], withheld_fields=job["withheld"],
            citizens=job["lines"] - job["not_found"], not_found=job["not_found"], payload_sha256=payload_sha,
            payload_bytes=payload_bytes,
            encryption=PayloadEncryption(recipient_key=job["recipient_key"]["kid"]),
            receipt_key=job["receipt_kid"], decision_ids=job["decision_ids"], operator=t.operator or op.id,
            ledger_seqs=[SeqRange(first=a, last=b) for a, b in job["seqs"]], ledger_origin=self.ledger.origin,
            started_at=datetime.fromisoformat(job["started_at"]), completed_at=self.now(),
            tsa="none" if self.tsa is None else "later" if self.config.tsa_policy == "later" else "required")
        record_bytes = record.canonical_bytes()
        token = sign_jws(self.signer, record_bytes, TRANSFER_TYPE)
        _write_new(out / RECORD, json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False).encode())
        _write_new(out / SIGNATURE, token.encode())
        stamp_status = "none"
        if self.tsa is not None:
            stamp_status = "stamped" if self._stamp(self.tsa, out, token) else "pending"
        record_sha = hashlib.sha256(record_bytes).hexdigest()
        receipt = self._record(
            type="exchange.transfer", actor=op.actor(), dataset=record.dataset, fields=record.fields,
            purpose={"code": record.purpose, "legal_basis": record.legal_basis},
            decision_id=record.decision_ids[-1], effect="permit",
            recipient={"type": "agency", "id": t.agency, "channel": "exchange"},
            exchange={"agency": t.agency, "agreement_id": t.agreement_id, "transfer_id": t.transfer_id,
                      "citizens": record.citizens, "payload_sha256": payload_sha, "record_sha256": record_sha})
        self._write_keys(out, t)
        self.write_proof(out, receipt.seq)
        due = self.clock() + float(job["receipt_hours"]) * 3600
        self.store.update(t.transfer_id, state="complete", completed_at=self.clock(), payload_sha256=payload_sha,
                          record_sha256=record_sha, transfer_seq=receipt.seq, citizens=record.citizens,
                          not_found=record.not_found, receipt_due=due, receipt_status="outstanding",
                          timestamp_status=stamp_status, job=job)
        self.store.unstage(t.transfer_id)
        summary = {
            "transfer_id": t.transfer_id, "agreement_id": t.agreement_id, "agency": t.agency,
            "dataset": record.dataset, "citizens": record.citizens, "not_found": record.not_found,
            "fields": record.fields, "withheld_fields": record.withheld_fields, "payload_bytes": payload_bytes,
            "payload_sha256": payload_sha, "record_sha256": record_sha, "timestamp": stamp_status,
            "ledger_seqs": [[a, b] for a, b in job["seqs"]], "transfer_seq": receipt.seq,
            "receipt_due": datetime.fromtimestamp(due, UTC).isoformat(), "output_dir": str(out),
            "decision_ids": record.decision_ids, "seconds": round(seconds, 3), "resumed": resumed,
            "records_per_second": round(job["released"] / seconds, 1) if seconds > 0 else None,
        }
        if stamp_status == "pending" and self.config.tsa_policy == "refuse":
            raise ExchangeRefused(f"TSA unreachable at the end of transfer {t.transfer_id}: the record is signed "
                                  "but not time-stamped; hand nothing over until `ztcp exchange stamp` succeeds",
                                  ["tsa_unavailable"])
        return summary

    @staticmethod
    def _stamp(tsa: TsaClient, out: Path, token: str) -> bool:
        from provenance.timestamp import TsaUnavailable

        try:
            reply = tsa.stamp(jws_signature(token))
        except TsaUnavailable as exc:
            log.warning("transfer record in %s not time-stamped: %s", out, exc)
            return False
        _write_new(out / STAMP, reply)
        return True

    def _write_keys(self, out: Path, t: Transfer) -> None:
        """The public keys an offline verifier needs; each is pinned by the signed record or by the
        bureau's published keys (``ztcp exchange verify --signing-key`` / ``--checkpoint-key``)."""
        keys = {"exchange_signing": public_jwk(self.signer.public_key()),
                "checkpoint_key": self.ledger.signer.verifier_key,
                "ledger_origin": self.ledger.origin,
                "receipt_key": json.loads(t.receipt_key) if t.receipt_key else None}
        _write_new(out / KEYS, json.dumps(keys, indent=2).encode())

    def write_proof(self, out: Path, seq: int) -> bool:
        """``ledger.json``: the transfer event, a signed checkpoint covering it and the inclusion proof."""
        cp = self.ledger.checkpoint_or_latest()
        entry = self.ledger.get(seq)
        doc: dict[str, Any] = {"origin": self.ledger.origin, "seq": seq,
                               "event": base64.b64encode(entry.body).decode(), "checkpoint": None, "proof": None}
        if cp is not None and cp.size > seq:
            doc["checkpoint"] = cp.note
            doc["size"] = cp.size
            doc["proof"] = [base64.b64encode(h).decode() for h in self.ledger.inclusion_proof(seq, cp.size)]
        path = out / PROOF
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(json.dumps(doc, indent=2).encode())
        os.replace(tmp, path)
        return doc["proof"] is not None

    # -- time-stamps later --------------------------------------------------------------------------
    def stamp_pending(self) -> int:
        """Time-stamp transfer records made while the TSA was unreachable (``later``)."""
        if self.tsa is None:
            return 0
        done = 0
        for t in self.store.pending_timestamps():
            out = Path(t.output_dir or "")
            sig = out / SIGNATURE
            if not sig.exists() or (out / STAMP).exists():
                continue
            if self._stamp(self.tsa, out, sig.read_text().strip()):
                self.store.update(t.transfer_id, timestamp_status="stamped")
                done += 1
        return done

    # -- receipts -----------------------------------------------------------------------------------
    def record_receipt(self, receipt_jws: str, *, transfer_id: str | None = None,
                       actor: dict | None = None) -> dict[str, Any]:
        """Verify an agency's receipt and record ``exchange.receipt``; a bad one is recorded as
        ``exchange.receipt_refused`` (with its reason) and refused."""
        try:
            claimed = json.loads(jws_payload_unverified(receipt_jws))
            tid = str(claimed.get("transfer_id") or transfer_id or "")
        except (ValueError, AttributeError, ExchangeIntegrityError):
            raise ExchangeInputError("receipt: not a compact JWS with a JSON payload") from None
        if transfer_id is not None and tid != transfer_id:
            raise ExchangeInputError("receipt: names another transfer")
        t = self.store.get(tid) if re.fullmatch(r"xfer_[A-Za-z0-9]{1,64}", tid) else None
        if t is None or t.direction != "outbound":
            raise ExchangeInputError("receipt: unknown transfer")
        actor = actor or {"id": t.agency, "type": "agency"}
        base = {"agency": t.agency, "agreement_id": t.agreement_id, "transfer_id": t.transfer_id}

        def refuse(reason: str, message: str) -> ExchangeRefused:
            self._record(type="exchange.receipt_refused", actor=actor,
                         recipient={"type": "agency", "id": t.agency, "channel": "exchange"},
                         exchange={**base, "payload_sha256": t.payload_sha256, "reason": reason})
            return ExchangeRefused(f"receipt for {t.transfer_id} refused: {message}", [reason])

        if t.state != "complete":
            raise refuse("transfer_incomplete", "the transfer is not complete")
        try:
            key = load_public_jwk(json.loads(t.receipt_key or "null"), "Ed25519", "receipt key")
            payload = verify_jws(receipt_jws, key, RECEIPT_TYPE, "receipt")
            claims = ReceiptClaims.model_validate_json(payload)
        except ExchangeIntegrityError:
            raise refuse("bad_signature", "not signed with the receipt key registered in the agreement") from None
        except (ExchangeInputError, ValidationError):
            raise refuse("malformed", "its claims are not a ztcp receipt") from None
        if claims.payload_sha256 != t.payload_sha256:
            raise refuse("wrong_digest", "it acknowledges other bytes than the payload sent")
        if (claims.transfer_id, claims.agreement_id, claims.agency) != (t.transfer_id, t.agreement_id, t.agency):
            raise refuse("wrong_transfer", "it names another transfer, agreement or agency")
        if t.receipt_status == "received":
            return {"transfer_id": t.transfer_id, "status": "received", "duplicate": True}
        rec = self._record(type="exchange.receipt", actor=actor,
                           recipient={"type": "agency", "id": t.agency, "channel": "exchange"},
                           exchange={**base, "payload_sha256": claims.payload_sha256, "citizens": claims.citizens})
        self.store.update(t.transfer_id, receipt_status="received", receipt_at=self.clock())
        out = Path(t.output_dir or "")
        if out.is_dir():
            with contextlib.suppress(FileExistsError):
                _write_new(out / RECEIPT, receipt_jws.strip().encode())
        return {"transfer_id": t.transfer_id, "status": "received", "event_id": rec.event_id, "seq": rec.seq,
                "received_at": claims.received_at.isoformat()}

    def sweep_overdue(self) -> list[str]:
        """Record ``exchange.receipt_overdue`` once for each transfer past its receipt deadline (the
        SIEM rule ``exchange_receipt_overdue`` alerts on it)."""
        flagged = []
        for t in self.store.overdue(self.clock()):
            self._record(type="exchange.receipt_overdue", actor={"id": SYSTEM, "type": "service"},
                         recipient={"type": "agency", "id": t.agency, "channel": "exchange"},
                         exchange={"agency": t.agency, "agreement_id": t.agreement_id, "transfer_id": t.transfer_id,
                                   "payload_sha256": t.payload_sha256, "citizens": t.citizens})
            self.store.update(t.transfer_id, receipt_status="overdue")
            flagged.append(t.transfer_id)
        return flagged

    # -- inbound ------------------------------------------------------------------------------------
    def receive(self, op: Operator, agreement_id: str, payload_path: Path, statement: str, citizens_path: Path,
                fmt: str | None = None) -> dict[str, Any]:
        """Record data an agency sent us: its signed statement is verified against the key its
        agreement registers, the payload's digest checked, and one ``pii.receive`` recorded per citizen
        (so each citizen's trace shows where the bureau's copy came from), then ``exchange.inbound``."""
        agreement = self.agreement(agreement_id)
        try:
            payload = verify_jws(statement, agreement.receipt_key(), INBOUND_TYPE, "inbound statement")
            claims = InboundClaims.model_validate_json(payload)
        except ValidationError:
            raise ExchangeIntegrityError("inbound statement: its claims are not a ztcp inbound statement") from None
        if claims.agreement_id != agreement.id or claims.agency != agreement.agency:
            raise ExchangeIntegrityError("inbound statement: names another agreement or agency")
        digest = sha256_file(payload_path)[0].hexdigest()
        if digest != claims.payload_sha256:
            raise ExchangeIntegrityError("inbound payload: its SHA-256 is not the one the agency signed")
        if self.store.get(claims.transfer_id) is not None:
            raise ExchangeInputError(f"transfer {claims.transfer_id} was already recorded")
        refs: list[str] = []
        seen: dict[str, int] = {}
        for c, _ in inputs.parse(Path(citizens_path), self.blind_index_key(), fmt):
            if c.citizen_ref in seen:
                raise ExchangeInputError(f"duplicate citizens in the input (line {c.line} repeats "
                                         f"{seen[c.citizen_ref]})")
            seen[c.citizen_ref] = c.line
            refs.append(c.citizen_ref)
        if len(refs) != claims.citizens:
            raise ExchangeIntegrityError(f"the citizens list has {len(refs)} entries; the agency signed "
                                         f"{claims.citizens}")
        ex = {"agency": agreement.agency, "agreement_id": agreement.id, "transfer_id": claims.transfer_id,
              "direction": "inbound", "payload_sha256": digest}
        now = self.now()
        events = [contracts.ProvenanceEvent.model_validate({
            "time": now, "type": "pii.receive", "actor": op.actor(), "via": {"system": SYSTEM, "channel": "exchange"},
            "citizen_ref": ref, "dataset": agreement.dataset, "fields": list(agreement.fields),
            "purpose": {"code": agreement.purpose, "legal_basis": agreement.legal_basis}, "exchange": ex,
            "event_id": _event_id(claims.transfer_id, 0, ref)}) for ref in refs]
        receipts = self.recorder.record_many(events) if events else []
        summary = self._record(type="exchange.inbound", actor=op.actor(),
                               dataset=agreement.dataset, exchange={**ex, "citizens": len(refs)})
        self.store.insert(Transfer(transfer_id=claims.transfer_id, direction="inbound", agreement_id=agreement.id,
                                   agency=agreement.agency, dataset=agreement.dataset, state="complete",
                                   operator=op.id, created_at=self.clock(), completed_at=self.clock(),
                                   citizens=len(refs), payload_sha256=digest, transfer_seq=summary.seq,
                                   job={"seqs": _merge_seqs([], [r.seq for r in receipts])}))
        return {"transfer_id": claims.transfer_id, "agreement_id": agreement.id, "agency": agreement.agency,
                "citizens": len(refs), "payload_sha256": digest, "transfer_seq": summary.seq,
                "ledger_seqs": _merge_seqs([], [r.seq for r in receipts])}

    # -- agreements -----------------------------------------------------------------------------------
    def agreement_status(self) -> list[dict[str, Any]]:
        now = self.now()
        transfers = self.store.all()
        out = []
        for a in self.all_agreements():
            mine = [t for t in transfers if t.agreement_id == a.id]
            outbound = [t for t in mine if t.direction == "outbound" and t.state == "complete"]
            out.append({
                "agreement_id": a.id, "agency": a.agency, "dataset": a.dataset, "status": a.state(now),
                "fields": list(a.fields), "legal_basis": a.legal_basis, "expires": a.expires.isoformat(),
                "keys": bool(a.receipt_jwk and a.encryption_jwk), "transfers": len(outbound),
                "inbound": sum(1 for t in mine if t.direction == "inbound"),
                "receipts_outstanding": sum(1 for t in outbound if t.receipt_status == "outstanding"),
                "receipts_overdue": sum(1 for t in outbound if t.receipt_status == "overdue"),
                "unfinished": sum(1 for t in mine if t.state in ("staged", "running")),
            })
        return out


def _event_id(transfer_id: str, line: int, record_id: str) -> str:
    """Deterministic per (transfer, input line, record), so a chunk recorded again after kill -9 is a
    duplicate the ledger recognises (idempotent by event id), never a second event. UUID-shaped
    (version 8: application-defined) from BLAKE2b; cheaper than uuid5 at millions per batch."""
    h = hashlib.blake2b(f"ztcp-exchange:{transfer_id}:{line}:{record_id}".encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


class _DisclosureEvents:
    """Each citizen's ``pii.disclose`` of a batch, as the ledger's prepared rows, fast.

    All events of a chunk differ only in citizen_ref, event_id and record_id. One event per chunk is
    a fully validated :class:`contracts.ProvenanceEvent` (PII screen, patterns) with sentinels in
    those three places; its RFC 8785 bytes are cut at the sentinels and each citizen's body is the
    pieces joined around its values, which are checked against the same patterns here. The first
    event of every chunk is also built the slow way and compared byte for byte: a difference stops
    the batch (fail closed). Building a pydantic model per citizen cost more than the ledger append.
    """

    _S_REF, _S_EID, _S_RID = "cr_" + "Q" * 52, "00000000-0000-0000-0000-00000000e7e1", "rid-sentinel-7e1"
    _SAFE_RID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")  # needs no JSON escaping

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def for_time(self, when: datetime) -> Callable[[str, str, str], Any]:
        from provenance.store import Prepared, citizen_key

        kw = {**self.fields, "time": when}
        template = contracts.ProvenanceEvent.model_validate({**kw, "citizen_ref": self._S_REF,
                                                             "event_id": self._S_EID, "record_id": self._S_RID})
        body = template.canonical_bytes()
        parts = []
        rest = body
        # RFC 8785 key order: citizen_ref < event_id < record_id
        for sentinel in (self._S_REF, self._S_EID, self._S_RID):
            head, sep, rest = rest.partition(sentinel.encode())
            if not sep or sentinel.encode() in rest:
                raise ExchangeIntegrityError("cannot build disclosure events from the template")
            parts.append(head)
        p0, p1, p2, p3 = (*parts, rest)
        etype = template.type
        time_us = (template.time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        sha = hashlib.sha256
        checked = [False]

        def make(ref: str, event_id: str, record_id: str) -> Any:
            if not _REF.fullmatch(ref) or not self._SAFE_RID.fullmatch(record_id):
                return self._slow(kw, ref, event_id, record_id)
            b = p0 + ref.encode() + p1 + event_id.encode() + p2 + record_id.encode() + p3
            if not checked[0]:
                slow = self._slow(kw, ref, event_id, record_id)
                if slow.body != b:
                    raise ExchangeIntegrityError("disclosure event bytes differ from the contract's; nothing sent")
                checked[0] = True
            return tuple.__new__(Prepared, (event_id, citizen_key(ref), time_us, etype, b, sha(b"\x00" + b).digest()))

        return make

    @staticmethod
    def _slow(kw: dict, ref: str, event_id: str, record_id: str) -> Any:
        from provenance.store import Prepared, citizen_key

        ev = contracts.ProvenanceEvent.model_validate({**kw, "citizen_ref": ref, "event_id": event_id,
                                                       "record_id": record_id})
        b = ev.canonical_bytes()
        time_us = (ev.time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        return Prepared(ev.event_id, citizen_key(ref), time_us, ev.type, b, hashlib.sha256(b"\x00" + b).digest())


class _LedgerAppender:
    """``record_many`` of prepared rows straight into the ledger: one durable transaction per chunk
    (a chunk is a group already; the Recorder's group commit would only add a copy)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def record_many(self, events: Sequence[Prepared]) -> list[Receipt]:
        return self.ledger.append_prepared(events)


def _merge_seqs(ranges: list, seqs: list[int]) -> list[list[int]]:
    """Sorted, merged inclusive [first, last] ranges."""
    out = [list(r) for r in ranges]
    for s in sorted(seqs):
        if out and out[-1][0] <= s <= out[-1][1]:
            continue
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    out.sort()
    merged: list[list[int]] = []
    for a, b in out:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _write_new(path: Path, data: bytes) -> None:
    """Write a file that must not already exist, durably (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def receipt_for(transfer_dir: Path, agency_key: Any, *, received_at: datetime | None = None) -> str:
    """The agency's side (demo, tests, ``ztcp exchange acknowledge``): a receipt over the payload
    digest it computed itself, signed with its key."""
    record = json.loads((Path(transfer_dir) / RECORD).read_text())
    digest = sha256_file(Path(transfer_dir) / PAYLOAD)[0].hexdigest()
    claims = ReceiptClaims(transfer_id=record["transfer_id"], agreement_id=record["agreement_id"],
                           agency=record["agency"], payload_sha256=digest,
                           received_at=received_at or datetime.now(UTC), citizens=record["citizens"])
    return sign_jws(agency_key, claims.model_dump_json().encode(), RECEIPT_TYPE)


def inbound_statement(payload: Path, agency_key: Any, *, transfer_id: str, agreement_id: str, agency: str,
                      citizens: int, sent_at: datetime | None = None) -> str:
    """The sending agency's signed statement over data it sends the bureau (demo, tests)."""
    claims = InboundClaims(transfer_id=transfer_id, agreement_id=agreement_id, agency=agency,
                           payload_sha256=sha256_file(payload)[0].hexdigest(), citizens=citizens,
                           sent_at=sent_at or datetime.now(UTC))
    return sign_jws(agency_key, claims.model_dump_json().encode(), INBOUND_TYPE)
