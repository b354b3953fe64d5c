"""HTTP for the exchange (mounted by the composition root, ``server.app``).

``POST /v1/exchange/receipts``  (caller token, scope ``exchange:receipt``)
    body ``{"receipt": "<compact JWS>"}``: the agency's signature over the payload digest, with the
    key its agreement registers. 200 once ``exchange.receipt`` is recorded; a receipt over the wrong
    digest, or signed with another key, is recorded as ``exchange.receipt_refused`` and answered 422
    naming the reason; 404 for an unknown transfer.
``POST /v1/exchange/batches``  (the operator's subject token, like the gateway)
    body ``{"agreement_id", "citizens": [national IDs or citizen refs], "fields"?}``: the batch path
    as an asynchronous job for systems. 202 with ``Location: /v1/exchange/batches/{batch_id}``; bad
    input and refusals found before the job starts are 422 / 403 at once.
``GET  /v1/exchange/batches/{batch_id}``  (the same operator, or an auditor)
    the job's status: ``queued | running | complete | failed | refused``, progress, and the summary
    (transfer id, digests, ledger seqs) once complete. National IDs are never echoed.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

import contracts
from contracts.national_id import CITIZEN_REF_PATTERN
from exchange.errors import ExchangeError, ExchangeInputError, ExchangeIntegrityError, ExchangeRefused
from exchange.service import ExchangeService, Operator
from pdp.problems import Problem

_ID = r"^[A-Za-z0-9_.:\-]+$"
MAX_BATCH = 100_000  # larger batches go through `ztcp exchange send` with a file


class ReceiptBody(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    receipt: Annotated[str, StringConstraints(min_length=20, max_length=20_000)]


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    agreement_id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_ID)]
    citizens: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_BATCH, description="national IDs or citizen refs (cr_…), one per citizen")
    fields: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] | None = None


def _problem(exc: ExchangeError) -> Problem:
    if isinstance(exc, ExchangeRefused):
        return Problem(403 if "receipt" not in exc.message else 422, "Refused", exc.message,
                       type_="urn:ztcp:problem:refused", reasons=exc.reasons)
    if isinstance(exc, ExchangeIntegrityError):
        return Problem(422, "Does not verify", exc.message, type_="urn:ztcp:problem:integrity")
    if isinstance(exc, ExchangeInputError) and "unknown transfer" in exc.message:
        return Problem(404, "Not found", exc.message)
    return Problem(422, "Invalid request", exc.message)


class BatchJobs:
    """Batches running in this process (status survives in the transfer register for completed ones)."""

    def __init__(self, service: ExchangeService, outbox: Path) -> None:
        self.service = service
        self.outbox = Path(outbox)
        self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def submit(self, op: Operator, body: BatchBody) -> dict[str, Any]:
        # National IDs become citizen_refs here, in memory: the job's input file (in the home, while
        # the job stages it) never holds one. A bad entry is refused by its position, never echoed.
        key = self.service.blind_index_key()
        refs = []
        for i, c in enumerate(body.citizens):
            c = c.strip()
            try:
                refs.append(c if c.startswith("cr_") and re.fullmatch(CITIZEN_REF_PATTERN, c)
                            else contracts.citizen_ref(c, key))
            except contracts.InvalidNationalId:
                raise ExchangeInputError(f"citizens[{i}]: not a valid national ID or citizen_ref") from None
        batch_id = "batch_" + uuid.uuid4().hex
        work = self.outbox / batch_id
        work.mkdir(mode=0o700)
        src = work / "input.jsonl"
        fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            for ref in refs:
                f.write(json.dumps({"citizen_ref": ref}) + "\n")
        job: dict[str, Any] = {"batch_id": batch_id, "state": "queued", "operator": op.id,
                               "agreement_id": body.agreement_id,
                               "progress": {"done": 0, "total": len(body.citizens)}, "summary": None, "error": None}
        with self._lock:
            self._jobs[batch_id] = job

        def run() -> None:
            job["state"] = "running"
            try:
                job["summary"] = self.service.send(
                    op, body.agreement_id, src, work / "transfer", fields=body.fields, fmt="jsonl",
                    progress=lambda done, total: job["progress"].update(done=done, total=total))
                job["state"] = "complete"
            except ExchangeRefused as exc:
                job.update(state="refused", error=exc.message, reasons=exc.reasons)
            except Exception as exc:  # noqa: BLE001 - the status resource says why; never a traceback
                msg = exc.message if isinstance(exc, ExchangeError) else type(exc).__name__
                job.update(state="failed", error=msg)
            finally:
                src.unlink(missing_ok=True)  # staged in the transfer register; not kept twice

        threading.Thread(target=run, name=f"ztcp-{batch_id}", daemon=True).start()
        return job

    def status(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(batch_id)
        if job is not None:
            return job
        t = self.service.store.by_output_dir(str((self.outbox / batch_id / "transfer").resolve()))
        if t is None:
            return None
        return {"batch_id": batch_id, "state": "complete" if t.state == "complete" else "interrupted",
                "agreement_id": t.agreement_id, "transfer": t.as_dict()}


def create_router(service: ExchangeService, jobs: BatchJobs, *, require_caller: Callable[[str], Any],
                  require_subject: Callable[[], Any], operator: Callable[[Request, Any], Operator]) -> APIRouter:
    """``require_caller(scope)`` / ``require_subject()`` are the PDP's bearer dependencies;
    ``operator(request, subject)`` says what is believed of the caller's device and context (the
    gateway's resolver, supplied by the composition root)."""
    router = APIRouter(tags=["exchange"])

    @router.post("/v1/exchange/receipts", summary="Record an agency's signed receipt for a transfer")
    def post_receipt(body: Annotated[ReceiptBody, Body()], caller: Any = Depends(require_caller("exchange:receipt"))
                     ) -> dict:
        try:
            return service.record_receipt(body.receipt, actor={"id": caller.client_id, "type": "agency"})
        except ExchangeError as exc:
            raise _problem(exc) from None

    @router.post("/v1/exchange/batches", status_code=202, summary="Start a batch transfer under an agreement")
    def post_batch(request: Request, response: Response, body: Annotated[BatchBody, Body()],
                   subject: Any = Depends(require_subject())) -> dict:
        op = operator(request, subject)
        try:  # refusals that need no input are answered now, not by the job
            agreement = service.agreement(body.agreement_id)
            problem = agreement.problem(service.now())
            if problem:
                raise ExchangeRefused(f"agreement {agreement.id} is {agreement.state(service.now())}: nothing sent",
                                      [problem])
        except ExchangeError as exc:
            raise _problem(exc) from None
        try:
            job = jobs.submit(op, body)
        except ExchangeError as exc:
            raise _problem(exc) from None
        response.headers["Location"] = f"/v1/exchange/batches/{job['batch_id']}"
        response.headers["Cache-Control"] = "no-store"
        return job

    @router.get("/v1/exchange/batches/{batch_id}", summary="A batch job's status and, once complete, its transfer")
    def get_batch(batch_id: str, response: Response, subject: Any = Depends(require_subject())) -> dict:
        if not re.fullmatch(r"batch_[0-9a-f]{32}", batch_id):
            raise Problem(404, "Not found", "no such batch")
        job = jobs.status(batch_id)
        if job is None or (job.get("operator") not in (None, subject.id) and "auditor" not in subject.roles):
            raise Problem(404, "Not found", "no such batch")
        response.headers["Cache-Control"] = "no-store"
        return job

    return router
