"""The key audit store the SIEM reads incrementally."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from keymgmt import KeyAuditEvent, KeyAuditLog


def test_record_and_iter_since(tmp_path: Path) -> None:
    log = KeyAuditLog(tmp_path / "keyaudit.db")
    assert (tmp_path / "keyaudit.db").stat().st_mode & 0o777 == 0o600
    a = log.record(type="key.create", actor="os:alice", key_name="kek", key_version=1)
    log.record(KeyAuditEvent(type="key.decrypt_refused", actor="staff-1", dataset="ds", count=1,
                             reason="expired", decision_id="d-1"))
    got = list(log.iter_since(0))
    assert [s for s, _ in got] == [1, 2]
    assert got[0][1] == a
    assert got[1][1].reason == "expired" and got[1][1].decision_id == "d-1"
    assert [e.type for _, e in log.iter_since(1)] == ["key.decrypt_refused"]
    assert list(log.iter_since(2)) == []
    assert len(list(log.iter_since(0, limit=1))) == 1
    cols = [r[1] for r in sqlite3.connect(tmp_path / "keyaudit.db").execute("PRAGMA table_info(key_audit)")]
    assert cols == ["seq", "event_id", "time", "type", "actor", "key_name", "key_version", "dataset", "count",
                    "reason", "decision_id", "link"]


def test_unknown_type_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        KeyAuditLog(tmp_path / "a.db").record(type="key.steal", actor="x")


def test_concurrent_writers_get_distinct_ordered_seqs(tmp_path: Path) -> None:
    path = tmp_path / "keyaudit.db"
    logs = [KeyAuditLog(path) for _ in range(4)]

    def work(log: KeyAuditLog) -> None:
        for _ in range(50):
            log.record(type="key.rotate", actor="t", key_name="k")

    threads = [threading.Thread(target=work, args=(lg,)) for lg in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [s for s, _ in KeyAuditLog(path).iter_since(0)]
    assert seqs == list(range(1, 201))


def test_events_after_feeds_the_siem_key_event_schema(tmp_path: Path) -> None:
    import siem_rules

    log = KeyAuditLog(tmp_path / "keyaudit.db")
    log.record(type="key.rotate", actor="os:alice", key_name="data-kek", key_version=2)
    log.record(type="key.decrypt_refused", actor="staff-1", key_name="data-kek", dataset="ds", count=1,
               reason="expired", decision_id="d-1")
    events, cursor = log.events_after(None)
    assert cursor == 2 and [e["type"] for e in events] == ["key.rotate", "key.decrypt_refused"]
    for e in events:
        siem_rules.KeyEvent.model_validate(e)
        assert e["time"].endswith("Z")
    assert log.events_after(cursor) == ([], cursor)


def test_events_are_stamped_by_the_log_clock_unless_given_a_time(tmp_path) -> None:  # noqa: ANN001
    from datetime import UTC, datetime

    from keymgmt import KeyAuditLog

    log = KeyAuditLog(tmp_path / "keyaudit.db", clock=lambda: 1_772_700_000.0)  # a simulated "now"
    ev = log.record(type="key.rotate", actor="emp-key-1", key_name="data-kek")
    assert ev.time == datetime.fromtimestamp(1_772_700_000.0, UTC)
    given = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert log.record(type="key.rotate", actor="emp-key-1", key_name="data-kek", time=given).time == given
    stored = [e.time for _, e in log.iter_since(0)]
    assert stored == [datetime.fromtimestamp(1_772_700_000.0, UTC), given]


def test_the_key_audit_is_a_hash_chain_even_with_concurrent_writers(tmp_path: Path) -> None:
    from contracts.chained_log import verify_log

    path = tmp_path / "keyaudit.db"
    logs = [KeyAuditLog(path) for _ in range(3)]
    threads = [threading.Thread(target=lambda lg=lg: [lg.record(type="key.rotate", actor="t", key_name="k")
                                                      for _ in range(30)]) for lg in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = verify_log(logs[0], None)
    assert (verdict.ok, verdict.checked) == (True, 90)
    db = sqlite3.connect(path)
    db.execute("UPDATE key_audit SET actor = 'someone-else' WHERE seq = 40")
    db.commit()
    bad = verify_log(logs[0], None)
    assert (bad.ok, bad.failure.position) == (False, 40)


def test_a_key_audit_file_from_before_the_chain_is_chained_on_open(tmp_path: Path) -> None:
    from contracts.chained_log import verify_log
    from keymgmt.audit import _SCHEMA

    path = tmp_path / "keyaudit.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    db.executemany("INSERT INTO key_audit (event_id, time, type, actor, key_name) VALUES (?, ?, ?, ?, ?)",
                   [(f"e{i}", f"2026-01-0{i}T00:00:00.000000+00:00", "key.create", "os:a", "k") for i in range(1, 4)])
    db.commit()
    db.close()
    log = KeyAuditLog(path)
    log.record(type="key.rotate", actor="os:a", key_name="k")
    verdict = verify_log(log, None)
    assert (verdict.ok, verdict.checked) == (True, 4)


@pytest.mark.parametrize("window", [5000, 2])
def test_key_audit_retention_leaves_a_verifiable_chain(tmp_path: Path, window: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("keymgmt.audit.PRUNE_WINDOW", window)
    from datetime import UTC, datetime

    from contracts.chained_log import verify_log

    log = KeyAuditLog(tmp_path / "keyaudit.db")
    for day in range(1, 8):
        log.record(type="key.rotate", actor="os:a", key_name="k", time=datetime(2026, 1, day, tzinfo=UTC))
    cutoff = datetime(2026, 1, 4, tzinfo=UTC).timestamp()
    assert log.prune(cutoff, apply=False).deleted == 3
    assert len(list(log.iter_since(0))) == 7
    assert log.prune(cutoff, sign_mark=lambda m: "signed").deleted == 3
    assert [s for s, _ in log.iter_since(0)] == [4, 5, 6, 7]
    verdict = verify_log(log, None)
    assert (verdict.ok, verdict.checked, verdict.pruned) == (True, 4, 3)
