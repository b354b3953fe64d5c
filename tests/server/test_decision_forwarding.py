"""Decisions forwarded to the SOC's syslog through the feed ``ztcp serve`` builds from its settings
(``server.delivery.decision_feed``), on both decision-log drivers: it starts at the log's end, counts
its backlog, and delivers each later decision once, in order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from demo.siem_week import Traffic
from pdp.decision_log import DecisionLog
from server.delivery import decision_feed, make_delivery
from server.settings import load_settings
from siem_rules import Engine, connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.receivers import Rsyslog  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def log_source(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str | None, str | Path]:
    """(ZTCP_DATABASE_URL, where the decision log is) for each driver."""
    if request.param == "postgres":
        dsn = str(request.getfixturevalue("pg_dsn"))
        return dsn, dsn
    return None, tmp_path / "home" / "decisions.db"


def test_decisions_reach_syslog_through_the_feed_on_both_drivers(
        tmp_path: Path, log_source: tuple[str | None, str | Path]) -> None:
    database_url, where = log_source
    entries = [e for k, e in Traffic(seed=4, employees=1).benign(days=1) if k == "decision"][:40]
    assert len(entries) == 40
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    log = DecisionLog(where)
    try:
        for e in entries[:10]:
            log.submit(e)
        assert log.flush()
        with Rsyslog(tmp_path / "rs") as rs:
            settings = load_settings(home=home, database_url=database_url, syslog_decisions=True,
                                     syslog_url=f"tcp://127.0.0.1:{rs.tcp_port}", syslog_format="cef")
            feed = decision_feed(settings)
            assert feed is not None
            assert feed.last() == log.cursor() and feed.pending(0) == 10 and feed.pending(feed.last()) == 0
            Engine(connect(home / "siem.db"))
            delivery = make_delivery(settings)
            assert delivery is not None
            assert delivery.tick().get("syslog.decisions") == 0  # from the log's end: no flood of history
            for e in entries[10:]:
                log.submit(e)
            assert log.flush()
            assert delivery.status()["syslog.decisions"]["backlog"] == 30
            assert delivery.tick()["syslog.decisions"] == 30
            assert delivery.status()["syslog.decisions"]["backlog"] == 0
            lines = rs.wait_for(30)
    finally:
        log.close()
    assert [line.split("externalId=")[1].split(" ")[0] for line in lines] == [e["decision_id"] for e in entries[10:]]
