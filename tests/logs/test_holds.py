"""Legal holds on both drivers: SQLite in ZTCP_HOME, PostgreSQL shared by replicas."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import ConfigError
from server.holds import HoldNotFound, HoldSet, HoldStore

REF = "cr_" + "H" * 52


@pytest.fixture(params=["sqlite", "postgresql"])
def holds(request: pytest.FixtureRequest, tmp_path: Path) -> HoldStore:
    if request.param == "sqlite":
        return HoldStore(path=tmp_path / "legal_holds.db")
    return HoldStore(url=request.getfixturevalue("pg_url"))


def test_add_list_release_and_match(holds: HoldStore) -> None:
    a = holds.add("citizen", REF, "court order 17", "aud-1", now=100.0)
    b = holds.add("case", "C-2026-0009", "appeal", "aud-1", now=200.0)
    assert [h.hold_id for h in holds.list()] == [a.hold_id, b.hold_id]
    match = HoldSet.of(holds.list()).matcher()
    assert match(REF, None) and match(None, "C-2026-0009") and not match("cr_" + "X" * 52, "C-1")
    released = holds.release(a.hold_id, "aud-2", now=300.0)
    assert (released.active, released.released_by, released.released_at) == (False, "aud-2", 300.0)
    assert [h.hold_id for h in holds.list()] == [b.hold_id]
    assert len(holds.list(active_only=False)) == 2  # released, never deleted
    with pytest.raises(HoldNotFound):
        holds.release(a.hold_id, "aud-2")


@pytest.mark.parametrize(("kind", "subject"), [("citizen", "A123456789"), ("citizen", "cr_short"),
                                                ("case", "bad case id; drop"), ("person", REF)])
def test_a_raw_id_or_a_malformed_subject_is_refused(holds: HoldStore, kind: str, subject: str) -> None:
    with pytest.raises(ConfigError):
        holds.add(kind, subject, "x", "aud-1")
    assert holds.list() == []


def test_a_reason_is_required(holds: HoldStore) -> None:
    with pytest.raises(ConfigError):
        holds.add("case", "C-1", "  ", "aud-1")
