"""What a hash-chained log offers its verifier, and the walk that checks one (decision log, key audit).

A log built on :mod:`contracts.log_chain` keeps, beside its records:

* **prune marks**: retention deletes runs of old records (records under a legal hold stay, so a run
  may end before the next kept record). A mark says "after the kept record ``after``, records up
  to ``through`` were deleted; the last of them had link ``link``", so the chain resumes from it.
  A mark is signed like a head (below): without the signature, deleting records from the middle and
  writing a mark for the gap would go unnoticed.
* **signed heads**: now and then (after each SIEM run, on the leader) the newest position and link,
  signed with the installation's checkpoint key as a C2SP signed note. Removing the newest records
  (truncating the tail) then leaves a signed head pointing past the end, which the walk reports.

:func:`verify_log` walks a :class:`ChainedLog` front to back and names the first record (its
position) that does not fit, or the mark or head that is wrong.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.log_chain import GENESIS, ChainBreak, heads_match, link


@dataclass(frozen=True)
class PruneMark:
    """Records after ``after`` (a kept record's position; 0: the start) up to ``through`` were deleted."""

    after: int
    through: int
    link: bytes
    count: int
    note: str | None = None


@dataclass(frozen=True)
class PruneResult:
    """What one retention pass did (or, dry run, would do) to one log."""

    log: str
    deleted: int
    kept_by_hold: int
    marks: int

    def as_dict(self) -> dict[str, Any]:
        return {"log": self.log, "deleted": self.deleted, "kept_by_hold": self.kept_by_hold, "marks": self.marks}


@dataclass(frozen=True)
class SignedHead:
    position: int
    note: str


class ChainedLog(Protocol):
    """The verifier's view of one chained log (both decision-log drivers and the key audit)."""

    chain_name: str  # "decision_log", "key_audit"

    def chain_rows(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, dict[str, Any], bytes]]:
        """``(position, record, stored link)`` with position > ``after``, in log order."""
        ...

    def chain_head(self) -> tuple[int, bytes]:
        """The newest position and its link ((0, GENESIS) when empty and nothing was pruned)."""
        ...

    def prune_marks(self) -> list[PruneMark]: ...

    def signed_heads(self) -> list[SignedHead]: ...

    def add_signed_head(self, position: int, note: str) -> None: ...


def note_origin(ledger_origin: str, log: str, prune_after: int | None = None) -> str:
    return f"{ledger_origin}#{log}" if prune_after is None else f"{ledger_origin}#{log}/prune/{prune_after}"


def note_body(origin: str, position: int, link_: bytes) -> str:
    """The C2SP checkpoint body a head or prune mark is signed as: origin, position, base64 link."""
    return f"{origin}\n{position}\n{base64.b64encode(link_).decode()}\n"


# ``open_note(note, origin) -> (position, link)``: verifies the signature (raising ValueError or the
# caller's own error on a bad one) and parses the body. None: signatures are not checked.
NoteOpener = Callable[[str, str], tuple[int, bytes]]


@dataclass(frozen=True)
class LogVerdict:
    log: str
    checked: int
    pruned: int
    heads: int
    failure: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"log": self.log, "ok": self.ok, "records": self.checked, "pruned": self.pruned,
                             "signed_heads": self.heads}
        if self.failure is not None:
            d["position"] = self.failure.position
            d["error"] = self.failure.reason
        return d


def verify_log(log: ChainedLog, open_note: NoteOpener | None, origin: str = "",
               page: int = 10_000) -> LogVerdict:
    """Recompute every link of ``log`` across its prune marks; check marks' and heads' signatures
    (``open_note`` with the ledger ``origin``) and that no signed head points past the records."""
    name = log.chain_name
    marks: dict[int, PruneMark] = {}
    for m in log.prune_marks():
        if open_note is not None:
            try:
                pos, lk = open_note(m.note or "", note_origin(origin, name, m.after))
            except Exception:  # noqa: BLE001 - any failure to open it is a bad mark
                return LogVerdict(name, 0, 0, 0, ChainBreak(m.through, "its prune mark is not validly signed"))
            if pos != m.through or not heads_match(lk, m.link):
                return LogVerdict(name, 0, 0, 0, ChainBreak(m.through, "its prune mark differs from the signed one"))
        marks[m.after] = m
    heads: dict[int, bytes] = {}
    for h in log.signed_heads():
        if open_note is None:
            continue
        try:
            pos, lk = open_note(h.note, note_origin(origin, name))
        except Exception:  # noqa: BLE001
            return LogVerdict(name, 0, 0, 0, ChainBreak(h.position, "its signed head does not verify"))
        if pos != h.position:
            return LogVerdict(name, 0, 0, 0, ChainBreak(h.position, "its signed head names another position"))
        heads[pos] = lk
    previous, last, checked, pruned, used = GENESIS, 0, 0, 0, set()

    def resume(before: int) -> None:
        nonlocal previous, last, pruned
        m = marks.get(last)
        while m is not None and m.through < before and m.after not in used:
            used.add(m.after)
            previous, last, pruned = m.link, m.through, pruned + m.count
            m = marks.get(last)

    cursor = 0
    while True:
        rows = log.chain_rows(cursor, page)
        for position, record, stored in rows:
            resume(position)
            expected = link(previous, record)
            if not heads_match(expected, bytes(stored or b"")):
                return LogVerdict(name, checked, pruned, len(heads), ChainBreak(
                    position, "its link does not match the records before it "
                              "(altered, inserted, removed or reordered)"))
            want = heads.get(position)
            if want is not None and not heads_match(want, expected):
                return LogVerdict(name, checked, pruned, len(heads), ChainBreak(
                    position, "it differs from the signed head for this position (rewritten history)"))
            previous, last, checked = expected, position, checked + 1
        if len(rows) < page:
            break
        cursor = rows[-1][0]
    resume(1 << 62)  # a pruned tail
    unused = sorted(set(marks) - used)
    if unused:
        m = marks[unused[0]]
        return LogVerdict(name, checked, pruned, len(heads), ChainBreak(
            m.through, "a prune mark follows a record that is missing (records removed outside retention)"))
    beyond = [p for p in heads if p > last]
    if beyond:
        return LogVerdict(name, checked, pruned, len(heads), ChainBreak(
            last + 1, f"records up to the signed head at {max(beyond)} are missing (the log was truncated)"))
    return LogVerdict(name, checked, pruned, len(heads), None)


# ``sign(origin, position, link) -> note``: signs a head or mark body; None when no key is at hand.
NoteSigner = Callable[[str, int, bytes], str]


@dataclass(frozen=True)
class PruneRun:
    """One run of consecutive deletable records (see :func:`plan_prune`)."""

    after: int
    through: int
    link: bytes
    positions: tuple[int, ...]


def plan_prune(rows: list[tuple[int, bool, bytes]], marks: list[PruneMark],
               kept: int = 0) -> tuple[list[PruneRun], list[PruneMark]]:
    """Which records go and which marks record it.

    ``rows``: consecutive stored ``(position, deletable, link)``, in order; ``kept``: the position of
    the stored record just before them (0: they start the log). Stores prune a window of rows per
    transaction, so a writer never waits long: a run continuing from the previous window starts at
    the same kept record, so its mark absorbs that window's. A run is a maximal stretch of
    deletable records between kept ones (a held record splits runs). Returns the runs and the marks
    to store: one per run, keyed by the kept record before it and absorbing older marks inside its
    stretch (whose records it now spans), with the counts summed. Marks are returned unsigned."""
    runs: list[PruneRun] = []
    current: list[int] = []
    last_link = b""
    for position, deletable, lk in rows:
        if deletable:
            current.append(position)
            last_link = bytes(lk)
            continue
        if current:
            runs.append(PruneRun(kept, current[-1], last_link, tuple(current)))
            current = []
        kept = position
    if current:
        runs.append(PruneRun(kept, current[-1], last_link, tuple(current)))
    by_after = {m.after: m for m in marks}
    new: list[PruneMark] = []
    for run in runs:
        absorbed = [m for m in by_after.values() if run.after <= m.after <= run.through]
        count = len(run.positions) + sum(m.count for m in absorbed)
        # An older mark that starts at this run's kept record and ends beyond it cannot exist: its
        # end would be a deleted record inside this run's stretch, which we just saw stored.
        new.append(PruneMark(run.after, run.through, run.link, count))
    return runs, new


def superseded(marks: list[PruneMark], new: list[PruneMark]) -> list[int]:
    """The ``after`` keys of stored marks that the ``new`` marks replace (to delete)."""
    gone: set[int] = set()
    for n in new:
        gone.update(m.after for m in marks if n.after <= m.after <= n.through)
    return sorted(gone)
