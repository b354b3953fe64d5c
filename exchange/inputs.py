"""The batch's input file: which citizens to send, as CSV or JSONL, one citizen per line.

* **CSV**: a header naming ``national_id`` or ``citizen_ref`` (other columns are ignored), or no
  header at all and one identifier per line (each line a national ID or a ``cr_…`` reference);
* **JSONL**: one object per line with ``national_id`` or ``citizen_ref``, or a bare JSON string.

Every line is checked before anything is read from the protected database: a malformed line stops
the batch with its line number (never its content: it may be a national ID) and nothing is sent.
A national ID becomes the citizen's ``citizen_ref`` (the blind-index HMAC, contracts.citizen_ref)
and, for the lookup, the protected table's blind-index values; the raw ID is never stored.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import contracts
from contracts.national_id import CITIZEN_REF_PATTERN
from exchange.errors import ExchangeInputError

_REF = re.compile(CITIZEN_REF_PATTERN)
MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class Citizen:
    line: int
    citizen_ref: str
    by_id: bool  # named by national ID (looked up through the blind index) or by reference


def detect_format(path: Path, declared: str | None = None) -> str:
    if declared in ("csv", "jsonl"):
        return declared
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def _identifier(value: object, line: int) -> tuple[str, bool]:
    if not isinstance(value, str) or not value.strip():
        raise ExchangeInputError(f"input line {line}: no national_id or citizen_ref")
    v = value.strip()
    if v.startswith("cr_"):
        if not _REF.fullmatch(v):
            raise ExchangeInputError(f"input line {line}: malformed citizen_ref")
        return v, False
    return v, True


def read_identifiers(path: Path, fmt: str | None = None) -> Iterator[tuple[int, str, bool]]:
    """(line number, identifier, is a national ID) for every data line, in order."""
    fmt = detect_format(path, fmt)
    try:
        f = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed by the generator
    except OSError as exc:
        raise ExchangeInputError(f"--input: cannot read {path}: {exc.strerror}") from None
    with f:
        if fmt == "jsonl":
            for n, raw in enumerate(_lines(f), start=1):
                if not raw.strip():
                    continue
                try:
                    doc = json.loads(raw)
                except ValueError:
                    raise ExchangeInputError(f"input line {n}: not valid JSON") from None
                if isinstance(doc, dict):
                    keys = [k for k in ("national_id", "citizen_ref") if k in doc]
                    if len(keys) != 1:
                        raise ExchangeInputError(f"input line {n}: needs exactly one of national_id, citizen_ref")
                    value = doc[keys[0]]
                    ident, by_id = _identifier(value, n)
                    if by_id != (keys[0] == "national_id"):
                        raise ExchangeInputError(f"input line {n}: {keys[0]} is malformed")
                else:
                    ident, by_id = _identifier(doc, n)
                yield n, ident, by_id
            return
        first = f.readline()
        if len(first) > MAX_LINE:
            raise ExchangeInputError("input line 1: longer than 4096 characters")
        header = [h.strip().lower() for h in next(csv.reader([first]), [])]
        column = next((i for i, h in enumerate(header) if h in ("national_id", "citizen_ref")), None)
        rows = csv.reader(_lines(f, 2))
        start = 2
        if column is None:  # no header: the first line is data, one identifier per line
            rows = csv.reader(_lines(itertools.chain([first], f)))
            start = 1
            column = 0
        for n, row in enumerate(rows, start=start):
            if not row or all(not c.strip() for c in row):
                continue
            if column >= len(row):
                raise ExchangeInputError(f"input line {n}: has no {header[column] if header else 'identifier'} column")
            ident, by_id = _identifier(row[column], n)
            if header and header[column] == "citizen_ref" and by_id:
                raise ExchangeInputError(f"input line {n}: malformed citizen_ref")
            yield n, ident, by_id


def _lines(f: Iterable[str], start: int = 1) -> Iterator[str]:
    for n, raw in enumerate(f, start=start):
        if len(raw) > MAX_LINE:
            raise ExchangeInputError(f"input line {n}: longer than {MAX_LINE} characters")
        yield raw


def parse(path: Path, blind_index_key: bytes, fmt: str | None = None,
          id_indexes: Callable[[str], list[str]] | None = None) -> Iterator[tuple[Citizen, str | None]]:
    """Every line as a :class:`Citizen` and, for a national ID, its blind-index lookup values
    (space-separated, one per trusted key version) from ``id_indexes``."""
    make_ref = contracts.citizen_ref
    for n, ident, by_id in read_identifiers(path, fmt):
        if by_id:
            try:
                ref = make_ref(ident, blind_index_key)
            except contracts.InvalidNationalId:
                raise ExchangeInputError(f"input line {n}: not a valid national ID or citizen_ref") from None
            yield Citizen(n, ref, True), (" ".join(id_indexes(ident)) if id_indexes else None)
        else:
            yield Citizen(n, ident, False), None
