"""kill -9 during `ztcp exchange send`, then the same command again: the batch resumes at the last
sealed segment, and the agency gets every citizen exactly once, each recorded in the ledger once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from exchange.crypto import open_sealed
from exchange.service import PAYLOAD
from exchange.verify import verify_transfer
from server.runtime import Runtime
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
ZTCP = [sys.executable, "-m", "cli.main"]
_spec = importlib.util.spec_from_file_location("exchange_world", ROOT / "tests" / "helpers" / "exchange_world.py")
ew = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ew)
N = 12_000


def _done_lines(home: Path) -> int:
    try:
        with sqlite3.connect(home / "exchange.db", timeout=5) as db:
            row = db.execute("SELECT json_extract(job, '$.done_lines') FROM transfers").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0) if row else 0


def _kill_after(args: list[str], env: dict, home: Path, lines: int) -> int:
    proc = subprocess.Popen([*ZTCP, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _done_lines(home) <= lines:
            if proc.poll() is not None:
                raise AssertionError(f"send ended before the kill: {proc.stderr.read().decode()[-800:]}")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _done_lines(home)


def test_kill_9_mid_batch_then_resume_sends_every_citizen_exactly_once(ztcp_home: Path, tmp_path: Path) -> None:
    w = ew.World(ztcp_home, n=N)
    token = w.rt.issuer.issue_subject("emp-xo-1", ["exchange_officer"], method="fido2", mfa=True, org_unit="x")
    inp = w.input_file(tmp_path / "everyone.csv", list(range(1, N + 1)))
    tax_key, refs = w.tax.decryption, {w.ref(i) for i in range(1, N + 1)}
    w.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")}
    env.update(ZTCP_HOME=str(ztcp_home), ZTCP_CONFIG=str(tmp_path / "none.toml"), ZTCP_TOKEN=token,
               ZTCP_EXCHANGE_CHUNK="400", PYTHONPATH=str(ROOT))
    out = tmp_path / "out"
    args = ["exchange", "send", "--agreement", "DSA-2026-001", "--input", str(inp), "--output", str(out), "--json"]
    first = _kill_after(args, env, ztcp_home, 2_000)
    second = _kill_after(args, env, ztcp_home, first + 2_000)  # killed again, further on
    assert 0 < first < second < N
    done = subprocess.run([*ZTCP, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed"] is True and summary["citizens"] == N and summary["not_found"] == 0

    # The agency opens every citizen exactly once, in input order (lines 2..N+1 after the header).
    _head, segments = open_sealed(out / PAYLOAD, tax_key)
    segs = list(segments)
    lines = [json.loads(x)["line"] for seg in segs[:-1] for x in seg.splitlines()]
    assert lines == list(range(2, N + 2))
    assert json.loads(segs[-1]) == {"transfer_id": summary["transfer_id"], "records": N}

    # The ledger holds exactly one pii.disclose per citizen for this transfer, no more.
    rt = Runtime(load_settings())
    try:
        ours = [e.event for e in rt.ledger.entries()
                if e.event.type == "pii.disclose" and e.event.exchange
                and e.event.exchange.transfer_id == summary["transfer_id"]]
        assert len(ours) == N and {e.citizen_ref for e in ours} == refs
        assert len({e.decision_id for e in ours}) == 3  # the first run and each resumption decided again
        assert sum(b - a + 1 for a, b in summary["ledger_seqs"]) == N
    finally:
        rt.close()
    assert verify_transfer(out).ok
