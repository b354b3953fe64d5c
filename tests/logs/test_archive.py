"""Ledger archives: sealed segments written, verified against checkpoints and the live ledger, restored;
a corrupted, missing or forged segment is named (exit 3)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import contracts
from cli.main import ztcp
from provenance.archive import ArchiveError, open_segment, seal_segment, segments
from server.archives import archive_dir, archive_keys, archive_ledger, verify_archive
from server.bootstrap import system_keys
from server.ledger import ledger_from_settings
from server.settings import load_settings

CREF = "cr_" + "C" * 52


def events(n: int, start: int) -> list[contracts.ProvenanceEvent]:
    return [contracts.ProvenanceEvent(type="pii.read", actor="emp-4", citizen_ref=CREF, dataset="claims",
                                       record_id=f"rec-{start + i}", fields=["claim_status"],
                                       purpose="benefit_review", time=datetime.now(UTC)) for i in range(n)]


def grow(n: int, checkpoint_every: int) -> None:
    with ledger_from_settings(load_settings()) as led:
        start = led.size
        for i in range(0, n, checkpoint_every):
            led.append(events(checkpoint_every, start + i))
            led.checkpoint()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(ztcp, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def home(ztcp_home: Path) -> Path:
    system_keys(load_settings()).ensure_all()
    grow(250, 50)  # checkpoints at 50, 100, …, 250
    return ztcp_home


def test_archive_verify_and_continue(home: Path) -> None:
    settings = load_settings()
    first = archive_ledger(settings, segment_events=120)
    # Segments end at checkpoints inside their span: 0-100, 100-200, 200-250.
    assert [p.name for p in first.written] == [f"ledger-{a:012d}-{b:012d}.zseg" for a, b in
                                               ((0, 100), (100, 200), (200, 250))]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in first.written)
    for p in first.written:  # never written unsealed: no event content in the file
        raw = p.read_bytes()
        assert b"emp-4" not in raw and CREF.encode() not in raw and b"claim_status" not in raw
    code, out = run("logs", "verify")
    assert code == 0, out
    assert "3 segment(s), seq 0..249, 250 events, 3 checkpoint(s) verified; the live ledger continues them" in out
    assert archive_ledger(settings).written == []  # nothing new since
    grow(100, 100)
    second = archive_ledger(settings)
    assert [p.name for p in second.written] == ["ledger-000000000250-000000000350.zseg"]
    assert verify_archive(settings).end == 350
    with ledger_from_settings(settings) as led:
        assert led.size == 350  # the ledger itself is never deleted


def test_a_corrupted_segment_is_named_and_exits_3(home: Path) -> None:
    archive_ledger(load_settings(), segment_events=120)
    victim = segments(archive_dir(load_settings()))[1]
    data = bytearray(victim.read_bytes())
    data[-40] ^= 0x01  # one bit in the ciphertext
    victim.write_bytes(bytes(data))
    code, out = run("logs", "verify")
    assert code == 3 and out.count("ztcp: error:") == 1
    assert victim.name in out and "corrupted or altered" in out


def test_an_altered_header_is_caught_too(home: Path) -> None:
    archive_ledger(load_settings(), segment_events=120)
    victim = segments(archive_dir(load_settings()))[2]
    victim.write_bytes(victim.read_bytes().replace(b'"end":250', b'"end":240', 1))
    code, out = run("logs", "verify", "--offline")
    assert code == 3 and victim.name in out


def test_a_missing_segment_is_a_gap(home: Path) -> None:
    archive_ledger(load_settings(), segment_events=120)
    gone = segments(archive_dir(load_settings()))[1]
    gone.unlink()
    code, out = run("logs", "verify")
    assert code == 3 and "starts at seq 200, but seq 100 is next: events missing" in out


def test_a_resealed_segment_with_altered_events_fails_its_checkpoint(home: Path) -> None:
    """Someone holding the archive key re-seals a segment with one event changed: the signed
    checkpoint (which that key cannot forge) no longer matches."""
    settings = load_settings()
    archive_ledger(settings, segment_events=120)
    victim = segments(archive_dir(settings))[0]
    keys = archive_keys(settings)
    header, rows = open_segment(victim, keys)
    seq, eid, body = rows[7]
    rows[7] = (seq, eid, body.replace(b"emp-4", b"emp-5"))
    victim.unlink()
    victim.write_bytes(seal_segment(rows, origin=header.origin, start=header.start, end=header.end, keys=keys,
                                    checkpoint=header.checkpoint))
    with pytest.raises(ArchiveError, match="do not match the checkpoint signed at size 100") as err:
        verify_archive(settings)
    assert err.value.segment == victim.name and err.value.exit_code == 3


def test_restore_offline_gives_back_every_event(home: Path, tmp_path: Path) -> None:
    archive_ledger(load_settings(), segment_events=120)
    out = tmp_path / "restored.jsonl"
    code, text = run("logs", "restore", "-o", str(out))
    assert code == 0 and "restored 250 events" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    with ledger_from_settings(load_settings()) as led:
        live = [e.document() for e in led.entries(0, 250)]
    assert docs == live
    assert run("logs", "restore", "-o", str(out))[0] == 1  # never overwrites
