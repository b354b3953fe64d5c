"""The ledger's archives as this installation keeps them: ``ZTCP_ARCHIVE_DIR`` (default
``ZTCP_HOME/archive``), sealed under the key provider's ``ledger-archive-kek`` (:mod:`provenance.archive`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from provenance.archive import (
    ARCHIVE_KEK,
    ArchiveReport,
    archived_end,
    open_segment,
    seal_segment,
    segment_name,
    segments,
    verify_archives,
    write_segment,
)
from provenance.store import entry_document
from server.settings import Settings


def archive_dir(settings: Settings) -> Path:
    return Path(settings.archive_dir) if settings.archive_dir else settings.ensure_home() / "archive"


def archive_keys(settings: Settings) -> Any:
    """The key provider sealing segments (Vault/OpenBao transit when configured, else the keyring)."""
    from server.keys import build_provider

    provider = build_provider(settings)
    provider.ensure(ARCHIVE_KEK, "aes256-gcm96")
    return provider


@dataclass
class ArchiveRun:
    written: list[Path]
    start: int
    end: int
    events: int
    bytes: int


def archive_ledger(settings: Settings, *, before: datetime | None = None,
                   segment_events: int = 100_000) -> ArchiveRun:
    """Copy the ledger from the first unarchived seq up to its newest checkpoint (signed before
    ``before``, if given) into sealed segments of at most ``segment_events`` events. A segment
    ending where a checkpoint was signed carries it; the last one always does."""
    from server.ledger import ledger_from_settings

    directory = archive_dir(settings)
    start = archived_end(directory)
    keys = archive_keys(settings)
    with ledger_from_settings(settings) as ledger:
        ledger.integrate_pending()
        notes = {}
        for row in ledger.raw_checkpoints():
            if row.size > start and (before is None or row.time_us < before.timestamp() * 1e6):
                notes[row.size] = row.note
        if not notes:
            return ArchiveRun([], start, start, 0, 0)
        target = max(notes)
        written: list[Path] = []
        total = 0
        lo = start
        while lo < target:
            # End a segment at a checkpoint when one falls inside it, so more segments carry one.
            hi = min(lo + segment_events, target)
            inside = [s for s in notes if lo < s <= hi]
            if inside and hi != target:
                hi = max(inside)
            rows = [(e.seq, e.event_id, e.body) for e in ledger.entries(lo, hi)]
            data = seal_segment(rows, origin=ledger.origin, start=lo, end=hi, keys=keys, checkpoint=notes.get(hi))
            written.append(write_segment(directory, data, segment_name(lo, hi)))
            total += len(data)
            lo = hi
        return ArchiveRun(written, start, target, target - start, total)


def verify_archive(settings: Settings, *, offline: bool = False, directory: Path | None = None) -> ArchiveReport:
    """Every segment intact, no gap, roots equal to their checkpoints; unless ``offline``, the live
    ledger's tree at the archives' end has the same root (no event lost between them)."""
    from server.ledger import ledger_from_settings

    with ledger_from_settings(settings) as ledger:
        live = None if offline else ledger.root
        size = None if offline else ledger.size
        return verify_archives(directory or archive_dir(settings), archive_keys(settings), ledger.verifiers,
                               ledger.origin, live, size)


def restore_archive(settings: Settings, output: Path, *, directory: Path | None = None) -> int:
    """Verify the archives offline, then write their events (as ``ztcp audit export --format jsonl``
    writes them) to ``output`` (0600). Returns how many."""
    directory = directory or archive_dir(settings)
    verify_archive(settings, offline=True, directory=directory)  # ArchiveError (exit 3) names a bad segment
    keys = archive_keys(settings)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    n = 0
    with os.fdopen(fd, "wb") as f:
        from provenance import merkle

        for path in segments(directory):
            _, rows = open_segment(path, keys)
            for seq, _eid, body in rows:
                f.write(orjson.dumps(entry_document(seq, merkle.leaf_hash(body), body)) + b"\n")
                n += 1
    return n
