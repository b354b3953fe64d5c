"""Sources: JSONL ingestion is atomic per batch, resumable by cursor, and refuses bad lines clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.siem_week import Traffic, to_jsonl
from siem_rules import CallableSource, Engine, EventError, JsonlSource, RulePack, connect


def _engine() -> Engine:
    return Engine(connect(":memory:"), RulePack())


def _write(path: Path, events) -> None:
    path.write_text("".join(to_jsonl(events)), encoding="utf-8")


def test_jsonl_ingest_resumes_from_cursor_without_duplicates(tmp_path: Path) -> None:
    t = Traffic(seed=2, employees=3)
    events = t.benign(days=1)[:500]
    f = tmp_path / "ev.jsonl"
    _write(f, events[:300])
    engine = _engine()
    src = JsonlSource(f, batch_lines=64)
    assert engine.ingest([src]) == 300
    with f.open("a", encoding="utf-8") as fh:
        fh.writelines(to_jsonl(events[300:]))
    assert engine.ingest([src]) == 200
    assert engine.ingest([src]) == 0
    assert sum(engine.store.count(k) for k in ("decision", "provenance", "key", "policy")) == 500


def test_partial_last_line_waits_for_the_writer(tmp_path: Path) -> None:
    t = Traffic(seed=2, employees=1)
    lines = list(to_jsonl(t.benign(days=1)[:3]))
    f = tmp_path / "ev.jsonl"
    f.write_text(lines[0] + lines[1] + lines[2][:20], encoding="utf-8")
    engine = _engine()
    assert engine.ingest([JsonlSource(f)]) == 2
    f.write_text(lines[0] + lines[1] + lines[2], encoding="utf-8")
    assert engine.ingest([JsonlSource(f)]) == 1


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not valid JSON"),
        ('{"kind": "telemetry"}', "'kind' must be one of"),
        ("[1, 2]", "expected a JSON object"),
        (
            '{"kind": "provenance", "event_id": "x", "time": "2026-03-04T00:00:00Z", "type": "pii.read", '
            '"actor": "a", "citizen_ref": "F223456789"}',
            "citizen_ref",
        ),
    ],
)
def test_bad_line_is_refused_with_its_line_number_and_nothing_is_ingested(
    tmp_path: Path, line: str, problem: str
) -> None:
    t = Traffic(seed=2, employees=1)
    good = list(to_jsonl(t.benign(days=1)[:5]))
    f = tmp_path / "ev.jsonl"
    f.write_text("".join(good[:3]) + line + "\n" + "".join(good[3:]), encoding="utf-8")
    engine = _engine()
    with pytest.raises(EventError) as exc:
        engine.ingest([JsonlSource(f)])
    assert problem in str(exc.value)
    assert "ev.jsonl" in str(exc.value)
    assert "F223456789" not in str(exc.value)
    assert sum(engine.store.count(k) for k in ("decision", "provenance", "key", "policy")) == 0
    assert engine.store.cursor(JsonlSource(f).name) is None


def test_callable_source_adapts_a_live_store() -> None:
    t = Traffic(seed=2, employees=1)
    ledger = [ev for kind, ev in t.benign(days=1) if kind == "provenance"][:50]

    def events_after(cursor: str | None, limit: int):
        pos = int(cursor or 0)
        batch = ledger[pos : pos + limit]
        return batch, pos + len(batch)

    engine = _engine()
    src = CallableSource("provenance-ledger", "provenance", events_after, limit=7)
    assert engine.ingest([src]) == 50
    assert engine.store.cursor("provenance-ledger") == "50"
    ledger.extend(json.loads(json.dumps(ledger[:3])))  # replays are harmless
    for i, ev in enumerate(ledger[50:]):
        ev["event_id"] = f"new-{i}"
    assert engine.ingest([src]) == 3
