"""Trusted time from a Time-Stamp Authority (RFC 3161): for checkpoints, and for anything else signed.

An event's ``time`` is what its producer said, and a checkpoint's time is the ledger host's clock:
neither is evidence. A TSA's time-stamp token over a checkpoint note proves the note — and so every
event below its size — existed no later than the token's ``genTime``. Requests and verification go
through the ``rfc3161-client`` library (never hand-written ASN.1): a request is SHA-256 with a
nonce and ``certReq``; a reply is accepted only when its status is granted, its imprint is our
digest and its nonce ours; verification checks the signature and the TSA certificate chain up to
the configured trust anchor (``ZTCP_TSA_CA_FILE``), the critical ``timeStamping`` EKU, then the
imprint.

:class:`CheckpointStamper` time-stamps every checkpoint **off the append path**, like publishing:
the ledger hands it each new note; a thread asks the TSA and keeps ``<size>.tsr`` (the DER reply)
in a directory. When the TSA is unreachable nothing waits: the gap is retried every
``retry_interval`` seconds (older checkpoints missed during an outage are stamped when it returns,
each later bound being still a true bound), and :func:`verify_stamps` reports the unstamped tail.

A stamp gives each event an **upper** time bound only: the first stamped checkpoint that covers the
event. There is no sound lower bound (a checkpoint stamped late does not say when the events after
it were appended), so none is claimed.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.errors import IntegrityError, ProvenanceError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from provenance.ledger import Ledger

log = logging.getLogger(__name__)

SUFFIX = ".tsr"
_CONTENT_TYPE = "application/timestamp-query"


class TsaUnavailable(ProvenanceError):
    """The TSA could not be reached or refused the request (nothing was time-stamped)."""

    exit_code = 2


class TimestampInvalid(ProvenanceError):
    """A time-stamp token does not verify (signature, chain, imprint or status)."""

    exit_code = 3


class TsaClient:
    """Asks one TSA (HTTP POST ``application/timestamp-query``, RFC 3161 §3.4) for tokens."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        import httpx

        self.url = url
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def stamp(self, data: bytes) -> bytes:
        """The DER ``TimeStampResp`` over SHA-256(``data``), checked against our request."""
        import httpx
        from rfc3161_client import HashAlgorithm, PKIStatus, TimestampRequestBuilder, decode_timestamp_response

        request = (TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
                   .nonce(nonce=True).cert_request(cert_request=True).build())
        try:
            r = self._client.post(self.url, content=request.as_bytes(), headers={"Content-Type": _CONTENT_TYPE})
        except httpx.HTTPError as exc:
            raise TsaUnavailable(f"TSA unreachable: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise TsaUnavailable(f"TSA answered HTTP {r.status_code}")
        try:
            reply = decode_timestamp_response(r.content)
        except ValueError as exc:
            raise TsaUnavailable(f"TSA reply is not a time-stamp response: {exc}") from None
        if PKIStatus(reply.status) != PKIStatus.GRANTED:
            raise TsaUnavailable(f"TSA refused the request (status {reply.status})")
        info = reply.tst_info
        if info.message_imprint.message != hashlib.sha256(data).digest():
            raise TsaUnavailable("TSA stamped a different digest than the one asked for")
        if info.nonce != request.nonce:
            raise TsaUnavailable("TSA reply does not carry our nonce (replayed?)")
        return r.content


class TsaVerifier:
    """Verifies tokens against the TSA's trust anchor(s) (PEM: root, then any intermediates)."""

    def __init__(self, roots: Sequence[Certificate], intermediates: Sequence[Certificate] = ()) -> None:
        if not roots:
            raise ProvenanceError("a TSA verifier needs at least one trust anchor")
        self.roots = list(roots)
        self.intermediates = list(intermediates)

    @classmethod
    def from_pem_file(cls, path: str | Path) -> TsaVerifier:
        """Self-signed certificates in the file are trust anchors; the others intermediates."""
        from cryptography import x509

        try:
            certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
        except ValueError as exc:
            raise ProvenanceError(f"{path}: not PEM certificates ({exc})") from None
        roots = [c for c in certs if c.issuer == c.subject]
        return cls(roots or certs, [c for c in certs if c.issuer != c.subject])

    def verify(self, reply: bytes, data: bytes) -> datetime:
        """``genTime`` of a token over SHA-256(``data``), or :class:`TimestampInvalid` saying why."""
        from rfc3161_client import VerificationError, decode_timestamp_response
        from rfc3161_client.verify import VerifierBuilder

        try:
            parsed = decode_timestamp_response(reply)
        except ValueError as exc:
            raise TimestampInvalid(f"not a time-stamp response ({exc})") from None
        verifier = VerifierBuilder(roots=list(self.roots), intermediates=list(self.intermediates)).build()
        try:
            verifier.verify_message(parsed, data)
        except VerificationError as exc:
            raise TimestampInvalid(str(exc)) from None
        return gen_time(reply)


def gen_time(reply: bytes) -> datetime:
    """The token's ``genTime`` (UTC), unverified: only after :meth:`TsaVerifier.verify`."""
    from rfc3161_client import decode_timestamp_response

    t = decode_timestamp_response(reply).tst_info.gen_time
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# -- checkpoints ------------------------------------------------------------------------------------


def stamp_path(directory: Path, size: int) -> Path:
    return Path(directory) / f"{size:012d}{SUFFIX}"


def stored_stamps(directory: Path | None) -> dict[int, Path]:
    """Checkpoint size → its stored token file."""
    if directory is None or not Path(directory).is_dir():
        return {}
    out = {}
    for p in Path(directory).glob(f"*{SUFFIX}"):
        stem = p.name[: -len(SUFFIX)]
        if stem.isdigit():
            out[int(stem)] = p
    return out


def _write_once(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # never replaces an existing token
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


class CheckpointStamper:
    """Callable ``(size, note)`` for the ledger's publish chain: time-stamps checkpoints off the
    append path. ``checkpoints()`` lists the ledger's ``(size, note)`` pairs so that checkpoints
    missed while the TSA was down (or made by another process) are stamped when it answers again."""

    def __init__(self, client: TsaClient, directory: Path,
                 checkpoints: Callable[[], Iterable[tuple[int, str]]] | None = None, *,
                 retry_interval: float = 60.0, batch: int = 200) -> None:
        self.client = client
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.checkpoints = checkpoints
        self.retry_interval = retry_interval
        self.batch = batch
        self.error: str | None = None
        self.stamped = 0
        self._pending: dict[int, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ztcp-tsa-stamper", daemon=True)
        self._thread.start()

    def __call__(self, size: int, note: str) -> None:
        with self._lock:
            self._pending[size] = note
        self._idle.clear()
        self._wake.set()

    def close(self) -> None:
        """Try what is pending once more (a CLI command's last checkpoint), then stop."""
        if self._pending:
            self.flush(timeout=15)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)
        self.client.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed over so far was tried once (tests, shutdown)."""
        self._wake.set()
        return self._idle.wait(timeout)

    def status(self) -> dict[str, Any]:
        return {"stamped": self.stamped, "pending": len(self._pending), "error": self.error}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.stamp_missing()
            except Exception as exc:  # noqa: BLE001 - keep trying; the error is reported in status()
                self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("checkpoint time-stamping failed: %s", self.error)
            if not self._wake.is_set():
                self._idle.set()

    def stamp_missing(self) -> int:
        """Stamp every known checkpoint that has no token yet (newest first: it covers the most)."""
        have = stored_stamps(self.directory)
        with self._lock:
            todo = dict(self._pending)
        if self.checkpoints is not None:
            for size, note in self.checkpoints():
                if size not in have:
                    todo.setdefault(size, note)
        done = 0
        for size in sorted(todo, reverse=True)[: self.batch]:
            if size in have:
                with self._lock:
                    self._pending.pop(size, None)
                continue
            try:
                reply = self.client.stamp(todo[size].encode("utf-8"))
            except TsaUnavailable as exc:
                self.error = str(exc)
                log.warning("checkpoint at size %d not time-stamped: %s", size, exc)
                return done  # the rest waits for the next try
            _write_once(stamp_path(self.directory, size), reply)
            with self._lock:
                self._pending.pop(size, None)
            self.error = None
            self.stamped += 1
            done += 1
        return done


@dataclass
class StampReport:
    """What ``audit verify`` says about trusted time."""

    stamped: int = 0
    checkpoints: int = 0
    latest_size: int = 0  # the largest stamped checkpoint
    latest_time: datetime | None = None
    unstamped: list[int] = field(default_factory=list)  # checkpoint sizes without a token
    ledger_size: int = 0

    @property
    def untimed_events(self) -> int:
        """Events not covered by any stamped checkpoint (appended after the latest one)."""
        return max(0, self.ledger_size - self.latest_size)

    def as_dict(self) -> dict[str, Any]:
        return {"stamped": self.stamped, "checkpoints": self.checkpoints, "latest_stamped_size": self.latest_size,
                "latest_stamp_time": self.latest_time.isoformat() if self.latest_time else None,
                "unstamped_checkpoints": len(self.unstamped), "events_after_latest_stamp": self.untimed_events}


def verify_stamps(ledger: Ledger, directory: Path, verifier: TsaVerifier) -> StampReport:
    """Check every stored checkpoint token: it must verify against the TSA's trust anchor and be a
    token over exactly the ledger's signed note at that size. Raises ``IntegrityError`` (kind
    ``timestamp``) naming the first bad one; reports checkpoints without a token (the gap)."""
    stamps = stored_stamps(directory)
    report = StampReport()
    report.ledger_size = ledger.size
    notes = {row[0]: row[3] for row in ledger.raw_checkpoints()}
    report.checkpoints = len(notes)
    for size in sorted(stamps):
        note = notes.get(size)
        if note is None:
            raise IntegrityError(f"a time-stamp token names checkpoint size {size}, which the ledger does not hold",
                                 seq=size, kind="timestamp")
        try:
            when = verifier.verify(stamps[size].read_bytes(), note.encode("utf-8"))
        except TimestampInvalid as exc:
            raise IntegrityError(f"time-stamp of checkpoint {size} does not verify: {exc}", seq=size,
                                 kind="timestamp") from None
        report.stamped += 1
        if size >= report.latest_size:
            report.latest_size, report.latest_time = size, when
    report.unstamped = sorted(s for s in notes if s not in stamps)
    return report


class TimeBounds:
    """Upper time bounds for events from verified checkpoint stamps: for a seq, the first stamped
    checkpoint whose size covers it (size > seq) and the TSA's time for it."""

    def __init__(self, bounds: dict[int, datetime]) -> None:
        self._sizes = sorted(bounds)
        self._times = bounds
        # The earliest *time* among the covering checkpoints is the tightest bound (a later size may
        # have been stamped before an earlier one was backfilled): suffix minima over sizes.
        self._best: list[int] = []
        best = None
        for s in reversed(self._sizes):
            if best is None or bounds[s] <= bounds[best]:
                best = s
            self._best.append(best)
        self._best.reverse()

    @classmethod
    def load(cls, ledger: Ledger, directory: Path | None, verifier: TsaVerifier | None) -> TimeBounds:
        """Stamps that verify against the ledger's own notes (an invalid one is simply not used:
        ``audit verify`` is where it fails loudly)."""
        if directory is None or verifier is None:
            return cls({})
        stamps = stored_stamps(directory)
        if not stamps:
            return cls({})
        notes = {row[0]: row[3] for row in ledger.raw_checkpoints()}
        out = {}
        for size, path in stamps.items():
            note = notes.get(size)
            if note is None:
                continue
            try:
                out[size] = verifier.verify(path.read_bytes(), note.encode("utf-8"))
            except TimestampInvalid:
                log.warning("time-stamp of checkpoint %d does not verify; not used", size)
        return cls(out)

    def __bool__(self) -> bool:
        return bool(self._sizes)

    def bound(self, seq: int) -> tuple[int, datetime] | None:
        """(checkpoint size, TSA time) proving ``seq`` was recorded no later than that time."""
        i = bisect.bisect_right(self._sizes, seq)
        if i == len(self._sizes):
            return None
        best = self._best[i]
        return best, self._times[best]
