"""A ztcp cluster on loopback, as deploy/ describes it: one PostgreSQL (every store and the protected
table), N ``ztcp serve`` replicas with homes of their own, and HAProxy running
``deploy/haproxy/haproxy.cfg`` in front of them (its root-only globals dropped, one ``server`` line
per replica, the replica's name added to each response for the test's accounting).

For tests/cluster/ and benchmarks/bench_cluster.py; load it by path (the suite runs in importlib
mode). Everything runs as child processes of the caller and is torn down by :meth:`Cluster.close`.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"  # Debian's, in sbin (not on a user's PATH)


def _load(name: str) -> Any:  # noqa: ANN401
    """A sibling helper, registered under ``ztcp_test_helpers.<name>`` (dataclasses look modules up)."""
    key = f"ztcp_test_helpers.{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[key] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


pg_helpers = _load("postgres")
insured = _load("insured_persons")
free_port = pg_helpers.free_port

CASE = "C-CL-0001"
READERS = [f"emp-r{k}" for k in range(1, 9)]  # officers assigned to CASE (gateway reads)
DECIDERS = [f"emp-d{k}" for k in range(1, 9)]  # subjects of direct decisions (varied signals)
DEVICE = "dev-cl-1"
# What the bureau's proxy would pass on for an enrolled counter workstation (HAProxy is trusted).
INTERNAL = {"X-Device-Id": DEVICE, "X-Network-Zone": "internal", "X-Channel": "counter", "X-Geo": "25.04,121.56"}


def haproxy_config(bind: str, replicas: list[str], *, tag_replica: bool = True,
                   stats_socket: Path | None = None) -> str:
    """deploy/haproxy/haproxy.cfg for an unprivileged run on loopback with ``replicas`` (and, for a
    benchmark that watches server states, an admin socket)."""
    text = HAPROXY_CFG.read_text()
    drop = ("log /dev/log", "chroot ", "stats socket ", "user ", "group ", "daemon", "log global", "option httplog")
    lines = [ln if not ln.startswith("    maxconn ") else "    maxconn 1000"  # an unprivileged FD limit
             for ln in text.splitlines() if not ln.strip().startswith(drop)]
    out: list[str] = []
    servers_done = False
    for ln in lines:
        if re.match(r"\s+server ztcp\d", ln):
            if not servers_done:
                out += [f"    server ztcp{k + 1} {addr} check" for k, addr in enumerate(replicas)]
                if tag_replica:
                    out.append("    http-response set-header X-Ztcp-Replica %[srv_name]")
                servers_done = True
            continue
        out.append(ln.replace('"${ZTCP_LB_BIND}"', bind).replace("/etc/haproxy/ztcp/", f"{HAPROXY_CFG.parent}/"))
        if ln.strip() == "global" and stats_socket is not None:
            out.append(f"    stats socket {stats_socket} mode 600 level admin")
    assert servers_done, "no server lines in deploy/haproxy/haproxy.cfg"
    return "\n".join(out) + "\n"


@dataclass
class Replica:
    name: str
    home: Path
    port: int
    env: dict[str, str]
    workers: int = 1
    siem_interval: float = 5.0
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = self.home / f"serve-{int(time.time() * 1000)}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning",
                                          "--siem-interval", str(self.siem_interval), "--workers", str(self.workers)],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def checks(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.url}/readyz", timeout=3)
        except httpx.HTTPError:
            return None
        return r.json().get("checks") if r.status_code in (200, 503) else None

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready in {timeout} s: {self.tail()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """kill -9 (the supervisor and its workers alike: the process group)."""
        assert self.proc is not None
        workers = _children(self.proc.pid)  # before the supervisor dies (they are reparented then)
        os.kill(self.proc.pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log and self.log.exists() else ""


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


@dataclass
class Cluster:
    base: Path
    n: int = 3
    workers: int = 1
    fsync: bool = False
    pg: Any = None
    replicas: list[Replica] = field(default_factory=list)
    haproxy: subprocess.Popen | None = None
    lb_port: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    caller: str = ""
    master: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())
    citizen_x: str = ""
    stats_socket: Path | None = None  # HAProxy's admin socket, when a benchmark watches server states
    siem_interval: float = 5.0  # the SIEM leader's tick (a benchmark keeps `ztcp serve`'s 60 s)

    # -- set-up -----------------------------------------------------------------------------------
    def start(self) -> Cluster:
        self.pg = pg_helpers.start_cluster(fsync=self.fsync, max_connections=300)
        import psycopg

        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "ztcp"')
            conn.execute('CREATE DATABASE "protected"')
        self.database_url = self.pg.url("ztcp")
        self.protected_url = f"{self.pg.url_base}/protected"
        self._bootstrap()
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            replica.wait_ready()
        self.start_haproxy()
        return self

    def env(self, home: Path, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")}
        return env | {"ZTCP_HOME": str(home), "ZTCP_PORT": str(port), "ZTCP_DATABASE_URL": self.database_url,
                      "ZTCP_PROTECTED_DB": self.protected_url, "ZTCP_MASTER_KEY": self.master,
                      "ZTCP_TRUSTED_PROXIES": '["127.0.0.1"]', "ZTCP_ENGINE_TIMEOUT_MS": "2000",
                      "ZTCP_CONFIG": str(home / "none.toml"), "PYTHONPATH": str(ROOT)}

    def _bootstrap(self) -> None:
        """What an operator does once: keys, the encrypted table, the bureau's registers and cases,
        the enrolled device (each replica's inventory), then tokens for the traffic."""
        import contracts
        from server.runtime import Runtime
        from server.settings import load_settings

        for k in range(self.n):
            home = self.base / f"replica{k + 1}"
            home.mkdir(mode=0o700, parents=True)
            self.replicas.append(Replica(f"ztcp{k + 1}", home, free_port(), self.env(home, 0), self.workers,
                                         self.siem_interval))
        for replica in self.replicas:
            replica.env["ZTCP_PORT"] = str(replica.port)
        first = self.replicas[0]
        saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("ZTCP_")]}
        try:
            rt = Runtime(load_settings(home=first.home, database_url=self.database_url,
                                       protected_db=self.protected_url,
                                       master_key=self.master))
            try:
                rt.keys.ensure_all()
                self.citizen_x = contracts.citizen_ref(insured.NID_X, rt.keys.blind_index)
                insured.write_bureau(first.home, CASE, self.citizen_x, READERS, rt)
                insured.create_encrypted_table(rt, insured.PEOPLE)
                for sub in READERS:
                    self.tokens[sub] = rt.issuer.issue_subject(sub, ["case_officer"], method="fido2", mfa=True,
                                                               org_unit="taipei-01", ttl_seconds=3600)
                for sub in DECIDERS:
                    self.tokens[sub] = rt.issuer.issue_subject(sub, ["case_officer"], method="fido2", mfa=True,
                                                               org_unit="taipei-01", ttl_seconds=3600)
                self.caller = rt.issuer.issue_client("counter-app", ["pdp:decide"])
            finally:
                rt.close()
            for replica in self.replicas:
                if replica is not first:
                    shutil.copy2(first.home / "bureau-data.json", replica.home / "bureau-data.json")
                other = Runtime(load_settings(home=replica.home, database_url=self.database_url,
                                              master_key=self.master))
                try:
                    other.device_inventory.register(DEVICE, managed=True, compliant=True, actor="test")
                finally:
                    other.close()
        finally:
            os.environ.update(saved)

    def start_haproxy(self) -> None:
        self.lb_port = self.lb_port or free_port()
        cfg = self.base / "haproxy.cfg"
        cfg.write_text(haproxy_config(f"127.0.0.1:{self.lb_port}", [f"127.0.0.1:{r.port}" for r in self.replicas],
                                      stats_socket=self.stats_socket))
        check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        self.haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                        stderr=(self.base / "haproxy.log").open("w"))
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.lb_url}/readyz", timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "HAProxy did not route to a ready replica"
            time.sleep(0.2)

    # -- in use -----------------------------------------------------------------------------------
    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def role_holder(self, role: str) -> Replica | None:
        """The replica that is ``leader`` for ``role`` (``integrator`` or ``scheduler``) now."""
        for replica in self.replicas:
            checks = replica.checks() if replica.proc is not None and replica.proc.poll() is None else None
            if checks and checks.get("cluster", {}).get("roles", {}).get(role) == "leader":
                return replica
        return None

    def read_headers(self, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[sub]}", **INTERNAL}

    def read_path(self) -> tuple[str, dict[str, str]]:
        return (f"/v1/records/{insured.DATASET}/1",
                {"fields": "name,address", "purpose": "benefit_review", "case_id": CASE})

    def decision_body(self, sub: str, *, citizen: str, device: str = "dev-d",
                      geo: tuple[float, float] = (25.03, 121.56), record: str = "r-1") -> dict[str, Any]:
        return {"subject_token": self.tokens[sub],
                "device": {"id": device, "managed": True, "compliant": True},
                "context": {"ip": "10.1.2.3", "network_zone": "internal", "channel": "counter",
                            "geo": {"lat": geo[0], "lon": geo[1], "country": "TW"}},
                "resource": {"type": "insured_person", "dataset": "insured_persons", "record_id": record,
                             "citizen_ref": citizen, "fields": ["name", "address"], "classification": "personal"},
                "action": "read", "purpose": {"code": "benefit_review", "case_id": CASE}}

    def ztcp(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A ``ztcp`` command on the first replica's home (the cluster's database)."""
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=self.replicas[0].env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def close(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
        for replica in self.replicas:
            replica.stop()
        if self.pg is not None:
            self.pg.destroy()


def haproxy_states(socket_path: Path) -> dict[str, str]:
    """Server name -> status (UP, DOWN, ...) from HAProxy's admin socket (``show stat``)."""
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(socket_path))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, ln.split(","), strict=False)) for ln in lines[1:] if ln]
    return {r["svname"]: r["status"] for r in rows if r.get("pxname") == "ztcp_replicas"}


def insured_ref(i: int) -> str:
    """A well-formed citizen_ref of some other citizen (no case: decisions about them are denied)."""
    return "cr_" + format(i, "b").replace("0", "A").replace("1", "B").rjust(52, "C")
