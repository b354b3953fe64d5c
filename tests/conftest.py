"""Suite-wide fixtures: every test gets its own ZTCP_HOME and no stray ZTCP_* from the machine, and
tests that need PostgreSQL share one throwaway cluster per session (``tests/helpers/postgres.py``)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The helper is loaded by path (the suite runs in importlib mode, tests/ is no package) and
# registered under one name, so a test module that needs the class itself gets the same module.
_spec = importlib.util.spec_from_file_location("ztcp_test_postgres", Path(__file__).parent / "helpers" / "postgres.py")
assert _spec and _spec.loader
pg_helpers = sys.modules.setdefault("ztcp_test_postgres", importlib.util.module_from_spec(_spec))
if not hasattr(pg_helpers, "start_cluster"):
    _spec.loader.exec_module(pg_helpers)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # integration targets stay visible to marked tests, and so does where the OPA library is
    keep = {"ZTCP_ES_URL", "ZTCP_OPA_URL", "ZTCP_OPA_LIB_DIR"}
    for name in list(os.environ):
        if name.startswith("ZTCP_") and name not in keep:
            monkeypatch.delenv(name)
    monkeypatch.setenv("ZTCP_HOME", str(tmp_path / "ztcp-home"))
    monkeypatch.setenv("ZTCP_CONFIG", str(tmp_path / "no-ztcp.toml"))


@pytest.fixture
def ztcp_home(tmp_path: Path) -> Path:
    return tmp_path / "ztcp-home"


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """One throwaway cluster for the session (a ``PgCluster``); tests take fresh databases in it."""
    if pg_helpers.pg_bin() is None:
        # A real component `make test` installs (scripts/install-system-deps.sh): say so, do not pretend.
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (make system)")
    cluster = pg_helpers.start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster) -> str:  # noqa: ANN001
    """A fresh database in the session cluster, as a SQLAlchemy URL (``postgresql+psycopg://…``)."""
    return f"{pg_cluster.url_base}/{pg_cluster.create_database()}"


@pytest.fixture
def pg_dsn(pg_cluster) -> str:  # noqa: ANN001
    """A fresh database in the session cluster, as a libpq URL (``postgresql://…``)."""
    return pg_cluster.url(pg_cluster.create_database())


@pytest.fixture
def pg_factory() -> Iterator[Callable[..., object]]:
    """Start clusters of the test's own (to stop, restart or crash); all are destroyed afterwards."""
    if pg_helpers.pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (make system)")
    made: list = []

    def make(**kw: object) -> object:
        cluster = pg_helpers.start_cluster(**kw)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.destroy()
