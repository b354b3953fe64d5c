"""Sealed archive segments of the provenance ledger: old ranges copied out, compressed and encrypted.

The ledger itself is never deleted; archives are what survives it offline (tape, another site).
A segment holds the events of seq ``[start, end)`` exactly as stored (the leaf hashes are
recomputed from them), compressed with zlib and sealed with AES-256-GCM under a fresh data key
that is wrapped by a key-encryption key of the installation's key provider (the sealed keyring or
Vault/OpenBao transit): no plaintext byte of a segment is ever written to disk. The segment's
header (origin, range, wrapped key, nonce, the signed checkpoint covering its end when there is
one) is the cipher's associated data, so altering it fails authentication too.

File layout::

    ZTCPSEG1\\n
    <header: one line of JSON>\\n
    <AES-256-GCM ciphertext of zlib(records)> (tag included)

with records ``seq (8 bytes) ‖ len(event_id) (2) ‖ len(body) (4) ‖ event_id ‖ body``, big-endian.

:func:`verify_archives` opens every segment in order and proves (1) each is intact (authenticated
decryption), (2) the segments cover seq 0 up to their end with no gap or overlap, and (3) the
Merkle root recomputed from their events equals every signed checkpoint a segment carries; with
the live ledger at hand, (4) its tree at the archives' end has that same root, so no event was lost
between the archives and the live ledger. Any failure names the segment (exit 3).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from provenance import merkle
from provenance.checkpoint import NoteVerifier, open_checkpoint
from provenance.errors import CheckpointError, ProvenanceError

MAGIC = b"ZTCPSEG1\n"
ARCHIVE_KEK = "ledger-archive-kek"
SUFFIX = ".zseg"
_REC = struct.Struct(">QHI")


class ArchiveError(ProvenanceError):
    """A segment that cannot be trusted: corrupted, forged, missing or out of sequence (exit 3)."""

    exit_code = 3

    def __init__(self, message: str, segment: str | None = None) -> None:
        super().__init__(message)
        self.segment = segment


class KeyWrapper(Protocol):
    """What seals a segment's data key: ``keymgmt`` providers (keyring or Vault transit)."""

    def generate_datakey(self, name: str, bits: int = 256) -> tuple[bytes, str]: ...

    def unwrap(self, name: str, wrapped: str) -> bytes: ...


@dataclass(frozen=True)
class SegmentHeader:
    origin: str
    start: int
    end: int
    kek: str
    wrapped_key: str
    nonce: str
    created: float
    checkpoint: str | None = None  # a signed checkpoint note at size ``end`` (None: end is not one)
    compression: str = "zlib"
    format: int = 1

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, raw: bytes) -> SegmentHeader:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != 1:
            raise ValueError("unknown segment format")
        return cls(**doc)


def segment_name(start: int, end: int) -> str:
    return f"ledger-{start:012d}-{end:012d}{SUFFIX}"


def pack_records(rows: Iterable[tuple[int, str, bytes]]) -> bytes:
    parts = []
    for seq, event_id, body in rows:
        eid = event_id.encode()
        parts.append(_REC.pack(seq, len(eid), len(body)))
        parts.append(eid)
        parts.append(body)
    return b"".join(parts)


def unpack_records(data: bytes) -> Iterator[tuple[int, str, bytes]]:
    pos, n = 0, len(data)
    while pos < n:
        seq, le, lb = _REC.unpack_from(data, pos)
        pos += _REC.size
        eid = data[pos:pos + le].decode()
        pos += le
        body = data[pos:pos + lb]
        pos += lb
        if pos > n:
            raise ValueError("truncated record")
        yield seq, eid, body


def seal_segment(rows: Sequence[tuple[int, str, bytes]], *, origin: str, start: int, end: int,
                 keys: KeyWrapper, kek: str = ARCHIVE_KEK, checkpoint: str | None = None,
                 level: int = 6) -> bytes:
    """The sealed bytes of one segment (nothing is written here)."""
    dek, wrapped = keys.generate_datakey(kek, 256)
    nonce = os.urandom(12)
    header = SegmentHeader(origin, start, end, kek, wrapped, base64.b64encode(nonce).decode(), time.time(),
                           checkpoint)
    head = header.to_bytes()
    sealed = AESGCM(dek).encrypt(nonce, zlib.compress(pack_records(rows), level), MAGIC + head)
    return MAGIC + head + b"\n" + sealed


def write_segment(directory: Path, data: bytes, name: str) -> Path:
    """Atomically (temporary file, fsync, rename), 0600."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / name
    if final.exists():
        raise ArchiveError(f"segment {name} exists already", name)
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


def read_header(path: Path) -> SegmentHeader:
    with path.open("rb") as f:
        magic = f.read(len(MAGIC))
        line = f.readline(1 << 20)
    if magic != MAGIC or not line.endswith(b"\n"):
        raise ArchiveError(f"segment {path.name} is not a ztcp ledger segment (corrupted header)", path.name)
    try:
        return SegmentHeader.parse(line[:-1])
    except (ValueError, TypeError) as exc:
        raise ArchiveError(f"segment {path.name} has a corrupted header ({type(exc).__name__})", path.name) from None


def open_segment(path: Path, keys: KeyWrapper) -> tuple[SegmentHeader, list[tuple[int, str, bytes]]]:
    """Authenticate, decrypt and decompress one segment, in memory."""
    data = path.read_bytes()
    header = read_header(path)
    head_end = data.index(b"\n", len(MAGIC))
    head = data[len(MAGIC):head_end]
    try:
        dek = keys.unwrap(header.kek, header.wrapped_key)
    except Exception as exc:  # noqa: BLE001 - a wrapped key that does not open is a bad segment
        raise ArchiveError(f"segment {path.name}: its data key does not unwrap ({type(exc).__name__})",
                           path.name) from None
    try:
        plain = AESGCM(dek).decrypt(base64.b64decode(header.nonce), data[head_end + 1:], MAGIC + head)
    except (InvalidTag, ValueError):
        raise ArchiveError(f"segment {path.name} is corrupted or altered (authentication failed)", path.name) from None
    try:
        rows = list(unpack_records(zlib.decompress(plain)))
    except (zlib.error, ValueError, struct.error, UnicodeDecodeError):
        raise ArchiveError(f"segment {path.name} does not decode", path.name) from None
    return header, rows


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(f"ledger-*{SUFFIX}")) if directory.exists() else []


def archived_end(directory: Path) -> int:
    """The first seq not yet archived (0 when there is no segment)."""
    segs = segments(directory)
    return read_header(segs[-1]).end if segs else 0


@dataclass
class ArchiveReport:
    segments: int = 0
    events: int = 0
    end: int = 0
    checkpoints: int = 0
    bytes: int = 0
    live_checked: bool = False
    names: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"segments": self.segments, "events": self.events, "end": self.end, "checkpoints": self.checkpoints,
                "bytes": self.bytes, "live_checked": self.live_checked}


def verify_archives(directory: Path, keys: KeyWrapper, verifiers: list[NoteVerifier], origin: str,
                    live_root: Any = None, live_size: int | None = None) -> ArchiveReport:
    """Prove every segment intact and the sequence complete (see the module docstring).

    ``live_root(size) -> bytes`` and ``live_size``: the live ledger's tree, to prove the archives are
    its prefix. Raises :class:`ArchiveError` naming the first bad segment."""
    report = ArchiveReport()
    frontier = merkle.CompactRange()
    expected = 0
    last_cp: tuple[int, bytes] | None = None
    for path in segments(directory):
        header, rows = open_segment(path, keys)
        name = path.name
        if header.origin != origin:
            raise ArchiveError(f"segment {name} belongs to ledger {header.origin!r}, not {origin!r}", name)
        if header.start != expected:
            what = "missing" if header.start > expected else "overlapping"
            raise ArchiveError(f"segment {name} starts at seq {header.start}, but seq {expected} is next: "
                               f"events {what} between segments", name)
        for seq, _eid, body in rows:
            if seq != expected:
                raise ArchiveError(f"segment {name} lacks seq {expected}", name)
            frontier.append(merkle.leaf_hash(body))
            expected += 1
        if expected != header.end:
            raise ArchiveError(f"segment {name} ends at seq {expected}, its header says {header.end}", name)
        if header.checkpoint is not None:
            try:
                cp = open_checkpoint(header.checkpoint, verifiers, origin)
            except CheckpointError as exc:
                raise ArchiveError(f"segment {name}: its checkpoint does not verify ({exc})", name) from None
            if cp.size != header.end or cp.root != frontier.root():
                raise ArchiveError(f"segment {name}: its events do not match the checkpoint signed at size "
                                   f"{cp.size}", name)
            last_cp = (cp.size, cp.root)
            report.checkpoints += 1
        report.segments += 1
        report.events += len(rows)
        report.bytes += path.stat().st_size
        report.names.append(name)
    report.end = expected
    if live_root is not None and expected:
        if live_size is not None and live_size < expected:
            raise ArchiveError(f"the live ledger has {live_size} events, fewer than the archives' {expected}: "
                               "events were lost from the live ledger", report.names[-1])
        if live_root(expected) != frontier.root():
            raise ArchiveError(f"the live ledger's first {expected} events differ from the archives",
                               report.names[-1])
        report.live_checked = True
    if expected and (last_cp is None or last_cp[0] != expected):
        raise ArchiveError(f"the last segment {report.names[-1]} carries no signed checkpoint: its events are "
                           "not vouched for", report.names[-1])
    return report


def digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
