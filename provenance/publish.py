"""Publishing signed checkpoints outside the ledger, as they are made.

A checkpoint kept only next to the ledger proves nothing against someone who can rewrite the file
and still sign (the local key's holder): the defence is a copy held elsewhere, which
``ztcp audit verify --published DIR`` checks the ledger against (the ledger's tree at each size must
have exactly that root). :class:`NotePublisher` writes every new checkpoint note to a directory —
a mount on write-once storage, a directory another team syncs, a witness's inbox — one file per
tree size, never overwritten.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from provenance.errors import ProvenanceError

log = logging.getLogger(__name__)

SUFFIX = ".note"


class PublishConflict(ProvenanceError):
    """A different note is already published for this tree size: the log has forked (two
    histories signed for the same size). Nothing is overwritten; investigate with ``audit verify``."""

    exit_code = 3


class NotePublisher:
    """Callable ``(size, note)`` for ``Ledger(publish=...)``: writes ``<size, 12 digits>.note``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, size: int) -> Path:
        return self.directory / f"{size:012d}{SUFFIX}"

    def __call__(self, size: int, note: str) -> None:
        path = self.path_for(size)
        if path.exists():
            if path.read_text(encoding="utf-8") == note:
                return  # the same checkpoint again (another process, a retry)
            raise PublishConflict(f"{path} already holds a different checkpoint for size {size}: "
                                  "two histories were signed for one size")
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(note)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic and refuses to replace: a concurrent publisher cannot clobber
        except FileExistsError:
            if path.read_text(encoding="utf-8") != note:
                raise PublishConflict(f"{path} already holds a different checkpoint for size {size}") from None
        finally:
            tmp.unlink(missing_ok=True)


def published_notes(paths: list[Path]) -> list[str]:
    """The notes in ``paths``: files as given, directories by their ``*.note`` files (sorted)."""
    notes: list[str] = []
    for p in paths:
        files = sorted(p.glob(f"*{SUFFIX}")) if p.is_dir() else [p]
        notes.extend(f.read_text(encoding="utf-8") for f in files)
    return notes
