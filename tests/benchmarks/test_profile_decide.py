"""``python -m benchmarks.profile_decide`` runs to its table (it once called DecisionLog internals
that had moved behind the store interface and crashed after the first figures). Not a timing test:
a few iterations, and only the report's shape is checked."""

from __future__ import annotations

import re

from benchmarks.profile_decide import profile


def test_profile_decide_reports_every_stage_and_the_writer() -> None:
    text = profile(20)
    writer = re.search(r"decision-log writer, SQLite insert per entry \(its own thread\): +([\d.]+) µs", text)
    assert writer is not None and float(writer.group(1)) > 0
    for stage in ("subject token", "signals (history.compute)", "engine: evaluate", "decision-log entry"):
        assert stage in text
