"""Where events come from: ``Source`` adapters feeding the event store incrementally.

A source returns the events after an opaque cursor and the new cursor. The engine stores the
cursor in the same transaction as the events, so a crash neither loses nor duplicates anything.
Adapting a live store (decision log, provenance ledger, key audit, policy audit) is a
``CallableSource`` around that store's "events after position N" query, e.g.::

    CallableSource("provenance-ledger", "provenance",
                   lambda cur, n: ledger.events_after(int(cur or 0), n))   # -> (events, new_cursor)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import EventError
from .events import KINDS, LEDGER_FIELDS, validate

Batch = list[tuple[str, dict[str, Any]]]


@runtime_checkable
class Source(Protocol):
    name: str

    def iter_since(self, cursor: str | None) -> tuple[Batch, str | None]:
        """Events after ``cursor`` (None = from the start), at most one batch, and the new cursor."""
        ...


class JsonlSource:
    """A JSONL file, each line ``{"kind": "decision"|"provenance"|"key"|"policy", ...event}`` or a
    provenance ledger entry (``ztcp audit export --format jsonl``: the event plus ``seq``, ``leaf_hash``).

    The cursor is a byte offset; only complete lines are consumed, so a file still being
    appended to is read safely.
    """

    validated = True  # each line is checked against its schema here, with its line number

    def __init__(self, path: Path, batch_lines: int = 50_000, name: str | None = None) -> None:
        self.path = Path(path)
        self.batch_lines = batch_lines
        self.name = name or f"jsonl:{self.path.resolve()}"

    def iter_since(self, cursor: str | None) -> tuple[Batch, str | None]:
        offset = int(cursor or 0)
        batch: Batch = []
        with self.path.open("rb") as fh:
            fh.seek(offset)
            # Line numbers are only for messages; counting from the start costs one pass.
            lineno = offset and self._line_of(offset)
            while len(batch) < self.batch_lines:
                line = fh.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):
                    break  # partial last line: wait for the writer
                lineno += 1
                offset += len(line)
                if not line.strip():
                    continue
                where = f"{self.path.name}:{lineno}"
                kind, event = parse_line(line, where)
                batch.append((kind, validate(kind, event, where)))
        return batch, str(offset)

    def _line_of(self, offset: int) -> int:
        with self.path.open("rb") as fh:
            return fh.read(offset).count(b"\n")


def parse_line(line: bytes | str, where: str) -> tuple[str, dict[str, Any]]:
    """One JSONL line: ``{"kind": ..., ...event}``, or a ledger entry as ``ztcp audit export --format
    jsonl`` writes it (a provenance event with the ledger's ``seq`` and ``leaf_hash``, no ``kind``)."""
    try:
        obj = json.loads(line)
    except ValueError:
        raise EventError(where, "not valid JSON") from None
    if not isinstance(obj, dict):
        raise EventError(where, "expected a JSON object")
    if "kind" not in obj and all(f in obj for f in LEDGER_FIELDS):
        return "provenance", obj
    kind = obj.pop("kind", None)
    if kind not in KINDS:
        raise EventError(
            where, f"'kind' must be one of {', '.join(KINDS)} (or the line a ledger entry with seq and leaf_hash)"
        )
    return kind, obj


class CallableSource:
    """A live store exposed as ``fetch(cursor, limit) -> (events, new_cursor)`` of one kind.

    Malformed events from a live store are quarantined, not allowed to stop the feed."""

    quarantine = True

    def __init__(
        self,
        name: str,
        kind: str,
        fetch: Callable[[str | None, int], tuple[list[dict[str, Any]], Any]],
        limit: int = 50_000,
    ) -> None:
        if kind not in KINDS:
            raise EventError(name, f"unknown kind {kind!r}")
        self.name, self.kind, self.fetch, self.limit = name, kind, fetch, limit

    def iter_since(self, cursor: str | None) -> tuple[Batch, str | None]:
        events, new_cursor = self.fetch(cursor, self.limit)
        return [(self.kind, e) for e in events], None if new_cursor is None else str(new_cursor)
