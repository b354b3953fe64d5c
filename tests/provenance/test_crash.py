"""kill -9 in the middle of batched appends: no acknowledged event is lost and the ledger verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance import Ledger
from provenance.verify import verify_ledger

SEED = bytes(range(32))

WRITER = textwrap.dedent(
    """
    import os, sys, threading
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from contracts import ProvenanceEvent
    from provenance import Ledger, Recorder
    path, ack_path = sys.argv[1], sys.argv[2]
    led = Ledger(path, Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "crash/test", checkpoint_every=500)
    rec = Recorder(led)
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    lock = threading.Lock()
    def worker(k):
        i = 0
        while True:
            batch = [ProvenanceEvent(type="pii.read", actor={"id": f"w{k}"}, record_id=f"r{k}-{i + j}")
                     for j in range(1 + (i % 50))]
            receipts = rec.record_many(batch)
            line = "".join(f"{r.event_id} {r.seq}\\n" for r in receipts).encode()
            with lock:
                os.write(ack, line)  # page cache survives kill -9 of this process
            i += len(batch)
    for k in range(4):
        threading.Thread(target=worker, args=(k,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("round_", range(3))
def test_kill_9_loses_no_acknowledged_event(tmp_path: Path, round_: int) -> None:
    path, ack = tmp_path / "ledger.db", tmp_path / "acks.txt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(ack)])
    try:
        deadline = time.time() + 60
        want = 2000 + 1500 * round_
        while time.time() < deadline:
            if ack.exists() and ack.stat().st_size > want * 40:
                break
            if proc.poll() is not None:
                pytest.fail(f"writer exited early with {proc.returncode}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    acked = {}
    for line in ack.read_text().splitlines():
        if line.count(" ") == 1:  # a line torn by the kill is not an acknowledgement we can read
            eid, seq = line.split()
            acked[eid] = int(seq)
    assert len(acked) > 1000
    with Ledger(path, Ed25519PrivateKey.from_private_bytes(SEED), "crash/test") as led:
        stored = led.get_by_event_ids(list(acked))
        assert len(stored) == len(acked), "an acknowledged event was lost"
        assert all(stored[e].seq == s for e, s in acked.items())
        report = verify_ledger(led, full=True)
        assert report.size >= len(acked)
        # The ledger keeps working after the crash.
        from contracts import ProvenanceEvent

        r = led.append([ProvenanceEvent(type="pii.read", actor="after-crash")])[0]
        assert r.seq == report.size
        led.checkpoint()
        verify_ledger(led)
