"""Throwaway PostgreSQL clusters for tests: Debian's server binaries, started as the ``postgres`` user.

postgres refuses to run as root, so when the suite runs as root the cluster is created and run as
the ``postgres`` OS user (``runuser -u postgres --``) in a temp dir chowned to that user, listening
on 127.0.0.1 with a free port and its unix socket in that dir. Trust authentication on loopback
only: a throwaway cluster for tests, never a pattern for a deployment.

Shared by every test package (``tests/conftest.py`` turns it into the ``pg_cluster``, ``pg_url``,
``pg_dsn`` and ``pg_factory`` fixtures): keymgmt's protected tables and the provenance ledger's
PostgreSQL driver run against the same kind of server. A test that restarts or stops PostgreSQL
starts a cluster of its own (``pg_factory``) so it never disturbs the session's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


def pg_bin() -> Path | None:
    """The newest installed server's bin directory (``/usr/lib/postgresql/<major>/bin``), if any."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class PgCluster:
    base: Path
    datadir: Path
    port: int
    bindir: Path
    options: str

    @property
    def log(self) -> Path:
        return self.base / "pg.log"

    @property
    def url_base(self) -> str:
        """SQLAlchemy form (keymgmt's engines): ``postgresql+psycopg://postgres@127.0.0.1:port``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def url(self, database: str = "postgres") -> str:
        """libpq form: ``postgresql://postgres@127.0.0.1:port/database``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh database; returns its name."""
        import psycopg

        name = "db_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def start(self) -> None:
        r = as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", self.options, "-l",
                        str(self.log), "-w", "-t", "60", "start")
        if r.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr[-1000:]} {log[-1000:]}")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash as far as clients can tell: sessions are cut, recovery runs on start."""
        as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def start_cluster(*, fsync: bool = False, max_connections: int = 100) -> PgCluster:
    """initdb + start. ``fsync=False`` (tests): commits reach the OS but are not forced to disk, which
    survives a server crash (what the tests do) but not a machine crash; benchmarks pass ``True``."""
    bindir = pg_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries not found under /usr/lib/postgresql (make system)")
    base = Path(tempfile.mkdtemp(prefix="ztcp-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    datadir = base / "data"
    port = free_port()
    init = [str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
    if not fsync:
        init.append("--no-sync")
    r = as_postgres(*init)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {r.stderr[-2000:]}")
    options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
               + ("" if fsync else " -c fsync=off"))
    cluster = PgCluster(base, datadir, port, bindir, options)
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return cluster
