"""The issue's "done when": rotate, rewrap and re-encrypt a live table while reads and writes go on."""

from __future__ import annotations

import random
import threading
import uuid
from pathlib import Path

import sqlalchemy as sa

import keymgmt
import pdp


def test_reads_and_writes_continue_during_reencrypt(tmp_path: Path, db_url: str, kit, local_ring,
                                                    decision_key, ledger_recorder) -> None:
    engine = keymgmt.make_engine(db_url)
    rows = kit.create_people(engine, 1500)
    admin = kit.make_table(engine, local_ring, kek_check_interval=0)
    keymgmt.encrypt_table(admin)
    # The serving side has its own envelope (another process in production).
    served = kit.make_table(engine, local_ring, kek_check_interval=0)
    signer = pdp.DecisionTokenSigner(decision_key, "iss", ttl_seconds=300)
    reader = keymgmt.ProtectedReader(served, signer.verifier(), ledger_recorder)
    local_ring.rotate(keymgmt.DEFAULT_KEK)
    admin.envelope.rewrap()

    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def serve() -> None:
        rnd = random.Random(7)
        while not stop.is_set():
            pk = rnd.randint(1, 1500)
            tok = signer.sign({"jti": str(uuid.uuid4()), "sub": "s", "effect": "permit", "action": "read",
                               "citizen_ref": rows[pk]["cref"], "dataset": "insured_persons",
                               "record_id": str(pk), "fields": ["national_id", "phone"], "purpose": "p"})[0]
            try:
                got = reader.read(tok, pk)
                assert got == {"national_id": rows[pk]["national_id"], "phone": rows[pk]["phone"]}
                reads[0] += 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    def write() -> None:
        for i in range(50):
            served.insert({"id": 10_000 + i, "national_id": f"D1{i:08d}", "phone": "0", "bank_account": "0",
                           "cref": "c"})

    t_read = threading.Thread(target=serve)
    t_read.start()
    t_write = threading.Thread(target=write)
    t_write.start()
    try:
        result = keymgmt.reencrypt(admin, batch=40)
    finally:
        t_write.join()
        stop.set()
        t_read.join()
    assert not errors, errors[0]
    assert reads[0] > 0 and result.rows_changed >= 1500
    keymgmt.reencrypt(admin)  # catch rows a concurrent writer put on a DEK that is now retired
    keymgmt.retire(local_ring, keymgmt.DEFAULT_KEK, 2, engine)
    admin.envelope.clear_cache()
    report = keymgmt.verify_table(admin)
    assert (report.rows, report.ok, report.failed) == (1550, 1550, 0)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM people WHERE ztcp_dek IS NULL")).scalar_one() == 0
    engine.dispose()
