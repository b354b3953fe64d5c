"""One contract, two drivers: console sessions in memory (one process) and in PostgreSQL (replicas).

The PostgreSQL driver is also checked for what only it can get wrong: two handles (two replicas)
share sessions and pending logins, the database alone holds nothing a browser could present, and
an older schema holding sessions is upgraded with them intact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from console.pg_sessions import MIGRATIONS, PostgresSessionStore
from console.sessions import Session, SessionStore
from pdp.errors import StoreUnavailable
from pdp.storage import migrate_pg


def _session(sub: str = "emp-1", token: str = "subject-token-abc") -> Session:  # noqa: S107
    return Session(sub, "Officer One", ("auditor", "soc_analyst"), "taipei-03", token, time.time() + 600, "dev")


@pytest.fixture(params=["memory", "postgresql"])
def make(request, tmp_path) -> Iterator:  # noqa: ANN001
    """A factory of handles on one store: (idle, absolute, max) → store."""
    if request.param == "memory":
        one: dict = {}

        def memory(idle: float = 60, absolute: float = 300, max_sessions: int = 10_000) -> SessionStore:
            return one.setdefault("store", SessionStore(idle, absolute, max_sessions))

        yield memory
        return
    url = request.getfixturevalue("pg_dsn")
    made: list[PostgresSessionStore] = []

    def pg(idle: float = 60, absolute: float = 300, max_sessions: int = 10_000) -> PostgresSessionStore:
        made.append(PostgresSessionStore(url, idle, absolute, max_sessions))
        return made[-1]

    yield pg
    for store in made:
        store.close()


def _same(a: Session, b: Session) -> None:
    for name in ("subject", "name", "roles", "org_unit", "token", "token_expires", "mode", "auth_method", "csrf"):
        assert getattr(a, name) == getattr(b, name), name


def test_a_session_is_found_by_its_raw_id_only(make) -> None:  # noqa: ANN001
    store = make()
    s = _session()
    raw = store.create(s)
    got = store.get(raw)
    assert got is not None
    _same(got, s)
    assert got.csrf_ok(s.csrf) and not got.csrf_ok("forged")
    assert store.get("not-a-session") is None and store.get(None) is None and store.get("") is None
    assert len(store) == 1


def test_idle_and_absolute_expiry(make) -> None:  # noqa: ANN001
    store = make(idle=60, absolute=300)
    s = _session()
    raw = store.create(s)
    t0 = s.created
    assert store.get(raw, now=t0 + 59) is not None
    assert store.get(raw, now=t0 + 59 + 61) is None  # idle
    s2 = _session()
    raw = store.create(s2)
    for step in range(1, 6):  # active every 55 s, yet the absolute limit still ends it
        assert store.get(raw, now=s2.created + 55 * step) is not None
    assert store.get(raw, now=s2.created + 301) is None


def test_drop_ends_it(make) -> None:  # noqa: ANN001
    store = make()
    raw = store.create(_session())
    store.drop(raw)
    store.drop(None)
    store.drop("never-issued")
    assert store.get(raw) is None


def test_the_store_is_bounded(make) -> None:  # noqa: ANN001
    store = make(max_sessions=10)
    raws = [store.create(_session(f"emp-{i}")) for i in range(25)]
    assert len(store) == 10
    assert store.get(raws[-1]) is not None  # the newest survive, the least recently seen went


def test_a_changed_session_is_saved(make) -> None:  # noqa: ANN001
    store = make()
    raw = store.create(_session())
    s = store.get(raw)
    s.token, s.token_expires, s.roles = "renewed-token", time.time() + 900, ("auditor",)
    store.save(s)
    again = make().get(raw)  # memory: the same store; postgresql: another replica's handle
    assert again.token == "renewed-token" and again.roles == ("auditor",)


def test_a_pending_login_is_single_use_and_bound_to_its_state(make) -> None:  # noqa: ANN001
    store = make()
    raw, pending = store.begin_login()
    assert store.finish_login(raw, "wrong-state") is None
    assert store.finish_login(raw, pending.state) is None  # consumed by the failed attempt
    raw, pending = store.begin_login()
    done = store.finish_login(raw, pending.state)
    assert done is not None and (done.state, done.verifier, done.nonce) == (pending.state, pending.verifier,
                                                                            pending.nonce)
    assert store.finish_login(raw, pending.state) is None
    assert store.finish_login(None, pending.state) is None and store.finish_login(raw, None) is None


# -- PostgreSQL only ----------------------------------------------------------------------------------

def test_a_session_from_one_replica_works_on_another_and_ends_on_all(pg_dsn) -> None:  # noqa: ANN001
    a, b = PostgresSessionStore(pg_dsn, 60, 300), PostgresSessionStore(pg_dsn, 60, 300)
    try:
        s = _session()
        raw = a.create(s)
        _same(b.get(raw), s)
        login_raw, pending = a.begin_login()  # the IdP sends the browser back to the other replica
        assert b.finish_login(login_raw, pending.state) is not None
        assert a.finish_login(login_raw, pending.state) is None  # once, cluster-wide
        b.drop(raw)
        assert a.get(raw) is None
    finally:
        a.close()
        b.close()


def test_the_database_alone_holds_nothing_a_browser_could_present(pg_dsn) -> None:  # noqa: ANN001
    store = PostgresSessionStore(pg_dsn, 60, 300)
    try:
        s = _session(token="eyJ-the-subject-token")
        raw = store.create(s)
        login_raw, pending = store.begin_login()
        with psycopg.connect(pg_dsn) as conn:
            dump = b"".join(bytes(r[0]) + str(r[1]).encode() for r in conn.execute(
                "SELECT sealed, id_hash FROM console_sessions "
                "UNION ALL SELECT sealed, id_hash FROM console_pending_logins"))
            # Another session's sealed record moved onto this id does not open (bound to its row).
            other = store.create(_session("emp-2"))
            conn.execute("UPDATE console_sessions SET sealed = (SELECT sealed FROM console_sessions WHERE id_hash = "
                         "encode(sha256(%s::bytea), 'hex')) WHERE id_hash = encode(sha256(%s::bytea), 'hex')",
                         (other.encode(), raw.encode()))
        for secret in (raw, login_raw, "eyJ-the-subject-token", s.csrf, "emp-1", pending.state, pending.verifier,
                       pending.nonce):
            assert secret.encode() not in dump
        assert store.get(raw) is None
        assert store.get(other).subject == "emp-2"
    finally:
        store.close()


def test_an_older_schema_holding_sessions_is_upgraded_with_them(pg_dsn) -> None:  # noqa: ANN001
    with psycopg.connect(pg_dsn) as conn:
        migrate_pg(conn, "console_sessions", MIGRATIONS[:1])  # what the first version wrote
    v1 = PostgresSessionStore.__new__(PostgresSessionStore)  # a handle of that version: sessions only
    v1.idle, v1.absolute, v1.max_sessions = 60, 300, 100
    from pdp.storage import PgSession

    v1._db = PgSession(pg_dsn, autocommit=True)
    s = _session()
    from console.pg_sessions import _seal
    from console.sessions import _digest

    raw = "a-browser-id-from-before-the-upgrade"
    v1._run("INSERT INTO console_sessions VALUES (%s, %s, %s, %s)",
            (_digest(raw), _seal(raw, _digest(raw), v1._doc(s)), s.created, s.last_seen), fetch=False)
    v1.close()
    store = PostgresSessionStore(pg_dsn, 60, 300)  # opening migrates to the newest version
    try:
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT version FROM ztcp_schema WHERE component = 'console_sessions'"
                                ).fetchone()[0] == len(MIGRATIONS)
        _same(store.get(raw), s)
        login_raw, pending = store.begin_login()  # what version 2 added works too
        assert store.finish_login(login_raw, pending.state) is not None
    finally:
        store.close()


def test_database_down_is_store_unavailable_then_recovers(pg_factory) -> None:  # noqa: ANN001
    cluster = pg_factory()
    url = cluster.url(cluster.create_database())
    store = PostgresSessionStore(url, 60, 300)
    try:
        raw = store.create(_session())
        cluster.stop()
        with pytest.raises(StoreUnavailable) as caught:
            store.get(raw)
        assert "postgresql://" not in str(caught.value)
        cluster.start()
        assert store.get(raw) is not None  # reconnects by itself
    finally:
        store.close()
