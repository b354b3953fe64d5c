"""A witness: someone other than the ledger's host who remembers what the ledger has signed.

Whoever owns the ledger's host owns its file and, with a local checkpoint key, can rewrite history
and sign a checkpoint for the rewrite. A witness — a separate process with its own home, its own
key and its own record of the last tree it cosigned for each log — only cosigns a new checkpoint
that *extends* what it cosigned before (a consistency proof from its size to the new one). A
rewritten history cannot be proven consistent, so the witness refuses it, and the cosignatures it
gave earlier stop matching the rewritten ledger: ``ztcp audit verify --witness-key`` then fails.

Formats are the C2SP ones:

* **tlog-cosignature**: a signature line ``— <name> base64(key ID ‖ timestamp ‖ signature)``, the
  key ID being SHA-256(name ‖ "\\n" ‖ 0x04 ‖ public key)[:4], the timestamp 8 bytes big-endian
  (seconds), the Ed25519 signature over ``"cosignature/v1\\ntime <timestamp>\\n" + checkpoint body``;
  verifier keys are ``<name>+<hex key ID>+<base64(0x04 ‖ public key)>``.
* **tlog-witness**: ``POST /add-checkpoint`` with body ``old <size>\\n`` + one base64 consistency-proof
  hash per line + a blank line + the signed checkpoint. 200 answers the cosignature line; 409 (with
  ``text/x.tlog.size`` body ``<size>\\n``) says the witness is at another size; 403 an unknown log
  or a bad log signature; 422 a proof that does not hold (a fork: a rewritten history); 400 a
  malformed request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from provenance import merkle
from provenance.checkpoint import Checkpoint, NoteVerifier
from provenance.errors import CheckpointError, ProofError, ProvenanceError

log = logging.getLogger(__name__)

_ALG_COSIGNATURE = b"\x04"
_SIG_PREFIX = "— "
SIZE_MEDIA_TYPE = "text/x.tlog.size"
MAX_REQUEST_BYTES = 64 * 1024


class WitnessError(ProvenanceError):
    """A witness interaction failed; ``status`` is the HTTP status the protocol gives it."""

    def __init__(self, status: int, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size
        self.exit_code = 3 if status == 422 else 2


def _cosig_key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ALG_COSIGNATURE + public_raw).digest()[:4]


def _signed_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


class CosignatureSigner:
    def __init__(self, key: Ed25519PrivateKey, name: str) -> None:
        if not name or any(c.isspace() for c in name) or "+" in name:
            raise CheckpointError("witness name must be non-empty with no spaces or '+'")
        self.name = name
        self._key = key
        self.public_raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = _cosig_key_id(name, self.public_raw)

    @property
    def verifier_key(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(_ALG_COSIGNATURE + self.public_raw).decode()}"

    def cosign(self, body: str, timestamp: int) -> str:
        sig = self._key.sign(_signed_message(body, timestamp))
        blob = self.key_id + timestamp.to_bytes(8, "big") + sig
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


class CosignatureVerifier:
    def __init__(self, name: str, public_raw: bytes) -> None:
        self.name = name
        self.key_id = _cosig_key_id(name, public_raw)
        self._key = Ed25519PublicKey.from_public_bytes(public_raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        try:
            name, hexid, b64 = vkey.strip().split("+", 2)
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise CheckpointError("malformed witness key") from None
        if len(raw) != 33 or raw[:1] != _ALG_COSIGNATURE:
            raise CheckpointError("not a witness (cosignature/v1) key")
        v = cls(name, raw[1:])
        if v.key_id.hex() != hexid:
            raise CheckpointError("witness key ID does not match its key")
        return v

    def verify(self, body: str, line: str) -> int:
        """The timestamp of this witness's valid cosignature ``line`` over ``body``, or CheckpointError."""
        line = line.rstrip("\n")
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError("malformed cosignature line")
        try:
            name, b64 = line[len(_SIG_PREFIX):].split(" ")
            blob = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise CheckpointError("malformed cosignature line") from None
        if name != self.name or len(blob) != 4 + 8 + 64 or blob[:4] != self.key_id:
            raise CheckpointError(f"not a cosignature by {self.name}")
        timestamp = int.from_bytes(blob[4:12], "big")
        try:
            self._key.verify(blob[12:], _signed_message(body, timestamp))
        except InvalidSignature:
            raise CheckpointError(f"cosignature by {self.name} does not verify (forged or for another tree)") from None
        return timestamp


# -- the request body ------------------------------------------------------------------------------
def add_checkpoint_body(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessError(400, "request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep or not note:
        raise WitnessError(400, "request has no checkpoint after the proof")
    lines = head.split("\n")
    if not lines[0].startswith("old ") or not lines[0][4:].isdigit():
        raise WitnessError(400, "first line must be 'old <size>'")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    except binascii.Error:
        raise WitnessError(400, "proof lines must be base64 hashes") from None
    if any(len(h) != merkle.HASH_SIZE for h in proof) or len(proof) > 64:
        raise WitnessError(400, "proof hashes must be SHA-256")
    return int(lines[0][4:]), proof, note


# -- the witness -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrustedLog:
    origin: str
    verifier: NoteVerifier


class Witness:
    """The witness's state (one SQLite file in its own home): per log, the last size and root it
    cosigned. Adding a checkpoint is one transaction, so two concurrent requests cannot both move
    the witness from the same old size."""

    def __init__(self, path: Path, signer: CosignatureSigner, logs: Sequence[TrustedLog],
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.signer = signer
        self.logs = {log_.origin: log_ for log_ in logs}
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a cosigned size must survive a crash
        self._db.execute("CREATE TABLE IF NOT EXISTS witnessed (origin TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                         " root BLOB NOT NULL, note TEXT NOT NULL, time INTEGER NOT NULL)")

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        row = self._db.execute("SELECT size, root FROM witnessed WHERE origin=?", (origin,)).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def add_checkpoint(self, body: bytes) -> str:
        """Cosign the checkpoint in ``body`` (tlog-witness request) or raise :class:`WitnessError`."""
        if len(body) > MAX_REQUEST_BYTES:
            raise WitnessError(400, "request too large")
        old, proof, note = parse_add_checkpoint(body)
        origin = note.split("\n", 1)[0]
        trusted = self.logs.get(origin)
        if trusted is None:
            raise WitnessError(403, f"unknown log {origin!r}")
        try:
            text = trusted.verifier.open(note)
            cp = Checkpoint.parse(text)
        except CheckpointError as exc:
            raise WitnessError(403, f"checkpoint refused: {exc}") from None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                current = self.latest(origin)
                have = current[0] if current else 0
                if old != have:
                    raise WitnessError(409, f"witness is at size {have}", size=have)
                if cp.size < have:
                    raise WitnessError(400, f"checkpoint size {cp.size} is below the witnessed {have}")
                if current is not None:
                    try:
                        merkle.verify_consistency(have, cp.size, proof, current[1], cp.root)
                    except ProofError as exc:
                        # The new tree does not extend what this witness cosigned: a fork, e.g. a
                        # history rewritten and re-signed with the log's own key.
                        log.error("witness refused %s at size %d: not consistent with size %d (%s)",
                                  origin, cp.size, have, exc)
                        raise WitnessError(422, f"not consistent with the witnessed size {have}: {exc}") from None
                timestamp = int(self.clock())
                cosignature = self.signer.cosign(text, timestamp)
                self._db.execute("INSERT INTO witnessed VALUES (?,?,?,?,?) ON CONFLICT(origin) DO UPDATE SET "
                                 "size=excluded.size, root=excluded.root, note=excluded.note, time=excluded.time",
                                 (origin, cp.size, cp.root, note, timestamp))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cosignature

    def close(self) -> None:
        self._db.close()


def create_witness_app(witness: Witness) -> FastAPI:
    """``POST /add-checkpoint`` (tlog-witness) and ``GET /healthz``."""
    app = FastAPI(title="ztcp witness", docs_url=None, redoc_url=None)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> PlainTextResponse:
        body = await request.body()
        try:
            line = await run_in_threadpool(witness.add_checkpoint, body)
        except WitnessError as exc:
            if exc.status == 409:
                return PlainTextResponse(f"{exc.size}\n", status_code=409, media_type=SIZE_MEDIA_TYPE)
            return PlainTextResponse(str(exc) + "\n", status_code=exc.status)
        return PlainTextResponse(line)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "witness": witness.signer.name}

    return app


# -- the ledger's side: sending checkpoints to witnesses ------------------------------------------
COSIG_SUFFIX = ".cosig"


@dataclass(frozen=True)
class WitnessEndpoint:
    url: str
    verifier: CosignatureVerifier

    @classmethod
    def parse(cls, url: str, vkey: str) -> WitnessEndpoint:
        return cls(url.rstrip("/"), CosignatureVerifier.from_vkey(vkey))


class Witnessing:
    """Callable ``(size, note)`` chained after publishing: sends each new checkpoint to every witness,
    off the append path (a thread; a slow or absent witness never delays a durable append), and keeps
    each cosignature as ``<size>.<witness>.cosig`` in ``directory``. Each witness's size is learned
    from its 409 answers, so a restart needs no state. ``status()`` is for ``/readyz``."""

    def __init__(self, endpoints: Sequence[WitnessEndpoint], consistency_proof: Callable[[int, int], list[bytes]],
                 directory: Path, *, timeout: float = 5.0) -> None:
        import queue

        import httpx

        self.endpoints = list(endpoints)
        self.proof = consistency_proof
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._client = httpx.Client(timeout=timeout)
        self._sizes: dict[str, int] = {}
        self.errors: dict[str, str | None] = {e.verifier.name: None for e in self.endpoints}
        self.cosigned: dict[str, int] = {}
        self._queue: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ztcp-witnessing", daemon=True)
        self._thread.start()

    def __call__(self, size: int, note: str) -> None:
        self._queue.put((size, note))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            # Only the newest pending checkpoint matters: it extends every older one.
            taken = 1
            while not self._queue.empty():
                nxt = self._queue.get()
                taken += 1
                if nxt is None:
                    self._queue.put(None)
                    break
                item = nxt
            for endpoint in self.endpoints:
                self.send(endpoint, *item)
            for _ in range(taken):
                self._queue.task_done()

    def send(self, endpoint: WitnessEndpoint, size: int, note: str) -> bool:
        import httpx

        name = endpoint.verifier.name
        old = self._sizes.get(name, 0)
        for _ in range(3):  # at most: our guess, the witness's size, once more after a race
            try:
                proof = self.proof(old, size) if 0 < old < size else []
                r = self._client.post(f"{endpoint.url}/add-checkpoint", content=add_checkpoint_body(old, proof, note))
            except (httpx.HTTPError, ProvenanceError) as exc:
                self.errors[name] = f"unreachable: {type(exc).__name__}"
                log.warning("witness %s not reached for size %d: %s", name, size, type(exc).__name__)
                return False
            if r.status_code == 409 and r.text.strip().isdigit():
                old = int(r.text.strip())
                if old > size:
                    self.errors[name] = f"witness is ahead of this checkpoint ({old} > {size})"
                    return False
                continue
            if r.status_code != 200:
                self.errors[name] = f"refused ({r.status_code}): {r.text.strip()[:200]}"
                log.error("witness %s refused the checkpoint at size %d: %s", name, size, self.errors[name])
                return False
            body = note[: note.rfind("\n\n") + 1]
            try:
                endpoint.verifier.verify(body, r.text)
            except CheckpointError as exc:
                self.errors[name] = f"bad cosignature: {exc}"
                return False
            path = self.directory / f"{size:012d}.{name}{COSIG_SUFFIX}"
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(r.text, encoding="utf-8")
            os.replace(tmp, path)
            self._sizes[name] = size
            self.cosigned[name] = size
            self.errors[name] = None
            return True
        self.errors[name] = "the witness's size kept changing"
        return False

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def status(self) -> dict[str, dict[str, object]]:
        return {name: {"cosigned_size": self.cosigned.get(name), "error": err} for name, err in self.errors.items()}

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._client.close()


def verify_witnessed(root_at: Callable[[int], bytes], size: int, origin: str, directory: Path,
                     verifiers: Sequence[CosignatureVerifier]) -> dict[str, int]:
    """Check every kept cosignature of the given witnesses against the ledger as it is now: the tree
    at each cosigned size must be the one the witness saw. Returns, per witness, the largest size
    checked; raises :class:`provenance.IntegrityError` (exit 3) naming the size that does not match."""
    from provenance.errors import IntegrityError

    checked: dict[str, int] = {}
    for verifier in verifiers:
        files = sorted(Path(directory).glob(f"*.{verifier.name}{COSIG_SUFFIX}"))
        if not files:
            raise IntegrityError(f"no cosignature by witness {verifier.name} in {directory}", kind="unwitnessed")
        for path in files:
            witnessed = int(path.name.split(".", 1)[0])
            if witnessed > size:
                raise IntegrityError(f"witness {verifier.name} cosigned size {witnessed} but the ledger has only "
                                     f"{size} events (truncated)", seq=size, kind="truncated")
            body = Checkpoint(origin, witnessed, root_at(witnessed)).body()
            try:
                verifier.verify(body, path.read_text(encoding="utf-8"))
            except CheckpointError as exc:
                raise IntegrityError(f"the tree at size {witnessed} is not the one witness {verifier.name} cosigned "
                                     f"(history rewritten): {exc}", seq=witnessed, kind="witness-mismatch") from None
            checked[verifier.name] = witnessed
    return checked
