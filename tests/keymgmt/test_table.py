"""The encrypted-table adapter and admin jobs on SQLite and a real PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import keymgmt
from keymgmt import EncryptedTable, TableJobError, TableSpec


@pytest.fixture
def engine(db_url: str) -> sa.Engine:
    eng = keymgmt.make_engine(db_url)
    yield eng
    eng.dispose()


def _plain(et: EncryptedTable, pk: int) -> dict:
    """What the row decrypts to (internal path; the public read path is ProtectedReader)."""
    return et._decrypt_row(et.fetch_row(pk), et.spec.columns)


def _assert_intact(et: EncryptedTable, rows: dict[int, dict]) -> None:
    for pk, want in rows.items():
        got = _plain(et, pk)
        assert got == {c: want[c] for c in et.spec.columns}, pk


def test_encrypt_in_place_then_lookup(engine: sa.Engine, local_ring: keymgmt.LocalKeyring, kit) -> None:
    rows = kit.create_people(engine, 120)
    et = kit.make_table(engine, local_ring)
    r = keymgmt.encrypt_table(et, batch=50)
    assert (r.rows_changed, r.rows_total, r.rows_pending_at_start) == (120, 120, 120)
    stored = et.fetch_row(7)
    assert stored["national_id"].startswith("ze1:") and stored["phone"].startswith("ze1:")
    assert stored["cref"] == rows[7]["cref"] and stored["note"] == "ok"  # untouched columns
    assert stored["ztcp_dek"] == keymgmt.parse_ciphertext(stored["national_id"]).dek_hex
    with engine.connect() as c:
        dump = " ".join(str(v) for r in c.execute(sa.text("SELECT * FROM people")) for v in r)
    assert rows[7]["national_id"] not in dump and rows[7]["phone"] not in dump
    _assert_intact(et, rows)
    assert et.find("national_id", rows[42]["national_id"].lower()) == [42]
    assert et.find("national_id", "Z999999999") == []
    with pytest.raises(keymgmt.KeyMgmtError, match="no blind index"):
        et.find("phone", "x")
    again = keymgmt.encrypt_table(et)  # idempotent: nothing left to do, nothing double-encrypted
    assert again.rows_changed == 0
    _assert_intact(et, rows)


def test_insert_update_and_ciphertext_copy_detected(engine: sa.Engine, local_ring, kit) -> None:
    kit.create_people(engine, 3)
    et = kit.make_table(engine, local_ring)
    keymgmt.encrypt_table(et)
    et.insert({"id": 100, "national_id": "B200000001", "phone": None, "bank_account": "1",
               "cref": "cr_x", "note": "new"})
    assert _plain(et, 100) == {"national_id": "B200000001", "phone": None, "bank_account": "1"}
    assert et.find("national_id", "b200000001") == [100]
    et.update(100, {"phone": "0911000111", "note": "edited"})
    assert _plain(et, 100)["phone"] == "0911000111" and et.fetch_row(100)["note"] == "edited"
    assert _plain(et, 100)["national_id"] == "B200000001"
    # An attacker with DB access copies row 1's ciphertext into row 2: it must not decrypt there.
    with engine.begin() as c:
        c.execute(sa.text("UPDATE people SET national_id = (SELECT national_id FROM people WHERE id = 1),"
                          " ztcp_dek = (SELECT ztcp_dek FROM people WHERE id = 1) WHERE id = 2"))
    with pytest.raises(keymgmt.CiphertextError):
        _plain(et, 2)
    report = keymgmt.verify_table(et)
    assert report.failures == {"decrypt_failed": 1} and report.failed_pks == [2]
    with pytest.raises(keymgmt.KeyMgmtError, match="managed by ztcp"):
        et.insert({"id": 5, "ztcp_dek": "x"})


def test_verify_counts_tampering_and_bad_blind_index(engine: sa.Engine, local_ring, kit) -> None:
    kit.create_people(engine, 20)
    et = kit.make_table(engine, local_ring)
    keymgmt.encrypt_table(et)
    with engine.begin() as c:
        ct = c.execute(sa.text("SELECT phone FROM people WHERE id = 3")).scalar_one()
        flipped = ct[:-3] + ("A" if ct[-3] != "A" else "B") + ct[-2:]
        c.execute(sa.text("UPDATE people SET phone = :p WHERE id = 3"), {"p": flipped})
        c.execute(sa.text("UPDATE people SET national_id_bidx = '1:0000000000000000' WHERE id = 4"))
    r = keymgmt.verify_table(et)
    assert (r.rows, r.ok, r.failed) == (20, 18, 2)
    assert r.failures == {"decrypt_failed": 1, "blind_index_mismatch": 1}
    assert sorted(r.failed_pks) == [3, 4]


def test_rotate_rewrap_reencrypt_retire_end_to_end(engine: sa.Engine, local_ring, kit) -> None:
    rows = kit.create_people(engine, 300)
    et = kit.make_table(engine, local_ring, kek_check_interval=0)
    keymgmt.encrypt_table(et, batch=64)
    kek, bik = keymgmt.DEFAULT_KEK, keymgmt.DEFAULT_BLIND_INDEX_KEY
    local_ring.rotate(kek)
    local_ring.rotate(bik)
    # New writes go to a new DEK while old rows still read.
    et.insert({"id": 1000, "national_id": "C100000001", "phone": "1", "bank_account": "2", "cref": "c"})
    st = keymgmt.table_status(et)
    assert st["rows_by_origin_kek_version"] == {"1": 300, "2": 1}
    # Retire is refused while anything depends on version 1, naming how many.
    with pytest.raises(keymgmt.RetireRefused,
                       match=r"people: 1 data keys wrapped .*rewrap.*people: 300 rows .*reencrypt"):
        keymgmt.retire(local_ring, kek, 2, engine)
    done, total = et.envelope.rewrap()
    assert (done, total) == (1, 1)
    with pytest.raises(keymgmt.RetireRefused, match=r"^cannot retire .*300 rows under data keys"):
        keymgmt.retire(local_ring, kek, 2, engine)
    with pytest.raises(keymgmt.RetireRefused, match="301 blind indexes"):
        keymgmt.retire(local_ring, bik, 2, engine)
    r = keymgmt.reencrypt(et, batch=64)
    assert r.rows_changed == 301  # 300 old DEK + the new row's stale blind index (bi key v2 came later)
    assert keymgmt.reencrypt(et).rows_changed == 0
    keymgmt.retire(local_ring, kek, 2, engine)
    keymgmt.retire(local_ring, bik, 2, engine)
    assert local_ring.info(kek).min_decryption_version == 2
    et.envelope.clear_cache()
    et.blind.refresh()
    report = keymgmt.verify_table(et)
    assert (report.rows, report.ok, report.failed) == (301, 301, 0)
    _assert_intact(et, rows)
    assert et.find("national_id", rows[9]["national_id"]) == [9]
    st = keymgmt.table_status(et)
    assert st["rows_by_origin_kek_version"] == {"2": 301}
    assert st["blind_index_versions"] == {"national_id": {"2": 301}}


def test_retire_version_bounds(engine: sa.Engine, local_ring, kit) -> None:
    with pytest.raises(keymgmt.KeyMgmtError, match="between 1 and 1"):
        keymgmt.retire(local_ring, keymgmt.DEFAULT_KEK, 2, engine)


def test_spec_validation(engine: sa.Engine, local_ring, kit) -> None:
    kit.create_people(engine, 1)
    with pytest.raises(TableJobError, match="primary key"):
        TableSpec(table="people", pk="id", columns=("id",))
    with pytest.raises(TableJobError, match="blind-index columns"):
        TableSpec(table="people", pk="id", columns=("phone",), blind_index=("national_id",))
    with pytest.raises(TableJobError, match="invalid table"):
        TableSpec(table="people; drop table x", pk="id", columns=("phone",))
    env = keymgmt.Envelope(local_ring, engine)
    with pytest.raises(TableJobError, match="no column"):
        EncryptedTable(engine, TableSpec(table="people", pk="id", columns=("nope",)), env).prepare()
    with pytest.raises(TableJobError, match="no table"):
        EncryptedTable(engine, TableSpec(table="ghost", pk="id", columns=("x",)), env).prepare()
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE nums (id INTEGER PRIMARY KEY, amount INTEGER)"))
    with pytest.raises(TableJobError, match="only text columns"):
        EncryptedTable(engine, TableSpec(table="nums", pk="id", columns=("amount",)), env).prepare()
    with pytest.raises(TableJobError, match="not a registered"):
        keymgmt.load_spec(engine, "nums")
    spec = TableSpec(**kit.PEOPLE_SPEC)
    EncryptedTable(engine, spec, env, keymgmt.BlindIndexKeys(local_ring)).prepare()
    assert keymgmt.load_spec(engine, "people") == spec
    other = TableSpec(**{**kit.PEOPLE_SPEC, "dataset": "else"})
    with pytest.raises(TableJobError, match="different spec"):
        EncryptedTable(engine, other, env, keymgmt.BlindIndexKeys(local_ring)).prepare()


def test_database_failure_mid_job_stops_cleanly_and_resumes(tmp_path, local_ring, kit) -> None:
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    rows = kit.create_people(engine, 500)
    et = kit.make_table(engine, local_ring)
    et.prepare()
    with engine.begin() as c:  # the database refuses the batch that holds row 260
        c.execute(sa.text("CREATE TRIGGER boom BEFORE UPDATE ON people WHEN NEW.id = 260 "
                          "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"))
    with pytest.raises(TableJobError, match="disk says no"):
        keymgmt.encrypt_table(et, batch=100)
    with engine.connect() as c:
        states = dict(c.execute(sa.text("SELECT id, ztcp_dek IS NOT NULL FROM people")).all())
        assert c.execute(sa.text("SELECT count(*) FROM people WHERE ztcp_dek IS NULL "
                                 "AND national_id LIKE 'ze1:%'")).scalar_one() == 0  # no half rows
    assert all(states[i] for i in range(1, 201)) and not any(states[i] for i in range(201, 301))
    with engine.begin() as c:
        c.execute(sa.text("DROP TRIGGER boom"))
    assert keymgmt.encrypt_table(et, batch=100).rows_changed == 300
    _assert_intact(et, rows)
