"""The timed jobs' leader lease (server/leader.py) on a real PostgreSQL: one holder at a time, a holder
that loses its session stops counting itself leader, a standby takes over, a database that does not
answer leaves nobody leading (no job runs) until it is back."""

from __future__ import annotations

import time

import psycopg

from server.leader import ALWAYS, LeaderLease, lease_for
from server.settings import load_settings


def _wait(predicate, timeout: float = 10.0) -> float:  # noqa: ANN001
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_one_holder_and_a_standby_takes_over_when_it_stops(pg_dsn) -> None:  # noqa: ANN001
    a = LeaderLease(pg_dsn, poll=0.2).start()
    _wait(a.held)
    b = LeaderLease(pg_dsn, poll=0.2).start()
    try:
        time.sleep(1.0)
        assert a.held() and not b.held()
        assert a.status()["role"] == "leader" and b.status()["role"] == "standby"
        a.stop()  # closing the session frees the lock at once
        took = _wait(b.held, timeout=2)
        assert took < 1.0 and not a.held()
    finally:
        a.stop()
        b.stop()


def test_a_leader_whose_session_is_ended_stops_and_the_standby_leads(pg_dsn) -> None:  # noqa: ANN001
    a = LeaderLease(pg_dsn, poll=0.2).start()
    _wait(a.held)
    b = LeaderLease(pg_dsn, poll=0.2).start()
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:  # e.g. the DBA, or the server's idle timeout
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                          "'ztcp-lease' AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                          "AND granted)")
        _wait(b.held, timeout=5)
        _wait(lambda: not a.held(), timeout=5)  # a found out on its next probe and stopped
        time.sleep(0.6)
        assert [a.held(), b.held()] == [False, True]  # it does not take the lock back
    finally:
        a.stop()
        b.stop()


def test_a_silent_leader_stops_counting_itself_leader_before_the_server_frees_the_lock(pg_dsn) -> None:  # noqa: ANN001
    a = LeaderLease(pg_dsn, poll=0.5, session_timeout=4.0)  # grace 3 s: 1 s before the server acts
    assert a.try_once() and a.held()
    # No more probes (a hung process): held() turns false after `grace`, before idle_session_timeout.
    assert a.grace < a.session_timeout
    _wait(lambda: not a.held(), timeout=a.grace + 0.5)
    b = LeaderLease(pg_dsn, poll=0.2)
    assert not b.try_once()  # the server has not ended a's session yet: nobody runs a tick meanwhile
    _wait(b.try_once, timeout=a.session_timeout + 2)  # then it has, and b leads
    a.stop()
    b.stop()


def test_no_database_no_leader(pg_factory) -> None:  # noqa: ANN001
    cluster = pg_factory()
    url = cluster.url(cluster.create_database())
    lease = LeaderLease(url, poll=0.2).start()
    try:
        _wait(lease.held)
        cluster.stop()
        _wait(lambda: not lease.held(), timeout=5)
        assert "error" in lease.status() and "postgresql://" not in lease.status()["error"]
        cluster.start()
        _wait(lease.held, timeout=10)  # leads again by itself
    finally:
        lease.stop()


def test_without_a_database_url_the_one_process_always_leads(tmp_path) -> None:  # noqa: ANN001
    assert lease_for(load_settings(home=tmp_path / "h")) is ALWAYS and ALWAYS.held()
