"""An unsigned tail that stays unsigned is an integrity failure (issue #13, finding 4).

Events after the latest checkpoint can be cut off by anyone with the file and leave no trace, so
ztcp signs every minute while serving and once more at shutdown; `audit verify` fails (exit 3) when
the tail is older than ZTCP_CHECKPOINT_UNSIGNED_MAX_AGE_SECONDS.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from provenance_testkit import make_event

from cli.main import ztcp
from provenance import IntegrityError, Recorder, verify_ledger
from provenance.verify import check_unsigned_tail
from server.ledger import ledger_from_settings
from server.settings import load_settings


def test_a_stale_unsigned_tail_fails_verify(ztcp_home: Path) -> None:
    ledger = ledger_from_settings(load_settings())
    try:
        ledger.append([make_event(i) for i in range(3)])
        ledger.checkpoint()
        ledger.append([make_event(i) for i in range(3, 5)])
        report = verify_ledger(ledger)
        assert report.unsigned_tail == 2
        check_unsigned_tail(ledger, report, max_age=3600)  # signed a moment ago: fine
        with pytest.raises(IntegrityError) as exc:
            check_unsigned_tail(ledger, report, max_age=-1)
        assert exc.value.kind == "unsigned-tail" and exc.value.seq == 3
    finally:
        ledger.close()
    result = CliRunner().invoke(ztcp, ["audit", "verify"])
    assert result.exit_code == 0, result.output


def test_the_recorder_signs_the_tail_when_it_stops(ztcp_home: Path) -> None:
    ledger = ledger_from_settings(load_settings())
    try:
        recorder = Recorder(ledger, checkpoint_timer=True)
        recorder.record(make_event(0))
        recorder.record(make_event(1))
        recorder.close()
        latest = ledger.latest_checkpoint()
        assert latest is not None and latest.size == ledger.size == 2
    finally:
        ledger.close()
