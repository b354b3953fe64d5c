"""kill -9 during encrypt-table and reencrypt, then resume: every row intact, none double-encrypted.

The job runs as a real `ztcp keys …` subprocess; we SIGKILL it while it is committing batches
(several times, at different points), re-run it, and check every row against the original plaintext.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

import keymgmt

ZTCP = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, master: bytes) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")}
    env.update(ZTCP_HOME=str(home), ZTCP_MASTER_KEY=base64.b64encode(master).decode(),
               ZTCP_CONFIG=str(home / "none.toml"))
    return env


def _count(engine: sa.Engine, where: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text(f"SELECT count(*) FROM people WHERE {where}")).scalar_one()


def _kill_mid_job(args: list[str], env: dict, engine: sa.Engine, progressed: str, start: int) -> int:
    """Start the job, wait until it committed more than ``start`` rows, SIGKILL it; rows done then."""
    proc = subprocess.Popen([*ZTCP, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"job ended before the kill: {proc.stderr.read().decode()[-500:]}")
            try:
                if _count(engine, progressed) > start:
                    break
            except sa.exc.DBAPIError:  # the state column is not there yet
                pass
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _count(engine, progressed)


def _open(home: Path, master: bytes, engine: sa.Engine) -> keymgmt.EncryptedTable:
    ring = keymgmt.LocalKeyring.open(keymgmt.default_keyring_path(home), master)
    env = keymgmt.Envelope(ring, engine)
    return keymgmt.EncryptedTable.load(engine, "people", env, keymgmt.BlindIndexKeys(ring))


def _assert_every_row_intact(et: keymgmt.EncryptedTable, rows: dict[int, dict]) -> None:
    with et.engine.connect() as c:
        stored = c.execute(sa.text("SELECT * FROM people ORDER BY id")).mappings().all()
    assert len(stored) == len(rows)
    for r in stored:
        assert r["ztcp_dek"] is not None
        got = et._decrypt_row(r, et.spec.columns)  # double encryption would decrypt to "ze1:…"
        assert got == {c: rows[r["id"]][c] for c in et.spec.columns}, r["id"]
    report = keymgmt.verify_table(et)
    assert (report.ok, report.failed, report.plaintext) == (len(rows), 0, 0)


def test_kill9_encrypt_table_and_reencrypt_then_resume(tmp_path: Path, db_url: str, kit) -> None:
    home = tmp_path / "home"
    master = os.urandom(32)
    env = _env(home, master)
    engine = keymgmt.make_engine(db_url)
    n = 5_000
    rows = kit.create_people(engine, n)
    db_arg = db_url
    enc = ["keys", "encrypt-table", "--db", db_arg, "--table", "people", "--pk", "id",
           "--columns", "national_id,phone,bank_account", "--blind-index", "national_id",
           "--citizen-ref-column", "cref", "--dataset", "insured_persons", "--batch", "100", "--json"]
    done = 0
    for _ in range(3):
        done = _kill_mid_job(enc, env, engine, "ztcp_dek IS NOT NULL", done)
        assert 0 < done < n, "the kill must land mid-job"
    r = subprocess.run([*ZTCP, *enc], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    et = _open(home, master, engine)
    _assert_every_row_intact(et, rows)

    # Rotate the KEK, then kill reencrypt mid-way several times and resume.
    assert subprocess.run([*ZTCP, "keys", "rotate", keymgmt.DEFAULT_KEK], env=env, cwd=ROOT,
                          capture_output=True, timeout=60).returncode == 0
    old = {r["ztcp_dek"] for r in engine.connect().execute(sa.text("SELECT ztcp_dek FROM people")).mappings()}
    old_list = ",".join(f"'{d}'" for d in old)
    moved = f"ztcp_dek NOT IN ({old_list})"
    reenc = ["keys", "reencrypt", "--db", db_arg, "--table", "people", "--batch", "100", "--json"]
    done = 0
    for _ in range(2):
        done = _kill_mid_job(reenc, env, engine, moved, done)
        assert 0 < done < n
    r = subprocess.run([*ZTCP, *reenc], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _count(engine, moved) == n
    et = _open(home, master, engine)
    _assert_every_row_intact(et, rows)
    st = keymgmt.table_status(et)
    assert st["rows_by_origin_kek_version"] == {"2": n}
    engine.dispose()
