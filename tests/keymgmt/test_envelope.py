"""Envelope encryption: AAD binding, tampering, DEK budget and rotation, cache, key table."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import sqlalchemy as sa

import keymgmt
from keymgmt import CiphertextError, Envelope, parse_ciphertext


@pytest.fixture
def env(tmp_path: Path, local_ring: keymgmt.LocalKeyring) -> Envelope:
    return Envelope(local_ring, keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}"))


def test_roundtrip_and_no_plaintext_in_ciphertext(env: Envelope) -> None:
    ct = env.encrypt("ds", "national_id", 7, "A123456789")
    assert ct.startswith("ze1:") and "A123456789" not in ct
    assert env.decrypt("ds", "national_id", 7, ct) == "A123456789"
    assert env.decrypt("ds", "name", "k", env.encrypt("ds", "name", "k", "陳小明")) == "陳小明"
    assert env.encrypt("ds", "c", 1, "same") != env.encrypt("ds", "c", 1, "same")  # fresh nonces


def test_aad_swap_rejected(env: Envelope) -> None:
    ct = env.encrypt("ds", "national_id", 7, "A123456789")
    with pytest.raises(CiphertextError, match="another row/column"):
        env.decrypt("ds", "national_id", 8, ct)  # copied to another row
    with pytest.raises(CiphertextError):
        env.decrypt("ds", "phone", 7, ct)  # copied to another column
    with pytest.raises(CiphertextError, match="another dataset"):
        env.decrypt("other", "national_id", 7, ct)  # copied to another dataset


def test_tampered_ciphertext_rejected(env: Envelope) -> None:
    ct = env.encrypt("ds", "c", 1, "value")
    raw = bytearray(base64.b64decode(ct[4:]))
    for pos in (0, 1, 9, 21, len(raw) - 1):  # version, dek id, nonce, body, tag
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        with pytest.raises(CiphertextError):
            env.decrypt("ds", "c", 1, "ze1:" + base64.b64encode(bytes(bad)).decode())
    with pytest.raises(CiphertextError):
        env.decrypt("ds", "c", 1, ct[:-4])


def test_dek_retired_before_budget_exhausted(tmp_path: Path, local_ring: keymgmt.LocalKeyring) -> None:
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    env = Envelope(local_ring, engine, max_uses=10, reserve_block=4)
    cts = env.encrypt_many("ds", "c", [(i, f"v{i}") for i in range(25)])
    deks = env.store.all("ds")
    assert len({parse_ciphertext(c).dek_hex for c in cts}) == 3  # 10 + 10 + 5
    assert all(d.uses_reserved <= d.max_uses == 10 for d in deks)
    assert sorted(d.state for d in deks) == ["active", "retired", "retired"]
    assert [env.decrypt("ds", "c", i, c) for i, c in enumerate(cts)] == [f"v{i}" for i in range(25)]


def test_budget_holds_across_writers(tmp_path: Path, local_ring: keymgmt.LocalKeyring) -> None:
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    a = Envelope(local_ring, engine, max_uses=8, reserve_block=4)
    b = Envelope(local_ring, engine, max_uses=8, reserve_block=4)
    used: dict[str, int] = {}
    for i in range(12):
        for e in (a, b):
            d = parse_ciphertext(e.encrypt("ds", "c", i, "x")).dek_hex
            used[d] = used.get(d, 0) + 1
    assert max(used.values()) <= 8


def test_rotation_makes_new_writes_use_a_new_dek(tmp_path: Path, local_ring: keymgmt.LocalKeyring) -> None:
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    env = Envelope(local_ring, engine, kek_check_interval=0)
    old = env.encrypt("ds", "c", 1, "before")
    local_ring.rotate(keymgmt.DEFAULT_KEK)
    new = env.encrypt("ds", "c", 2, "after")
    assert parse_ciphertext(old).dek_hex != parse_ciphertext(new).dek_hex
    rows = {d.dek_id: d for d in env.store.all()}
    assert rows[parse_ciphertext(old).dek_hex].state == "retired"
    assert rows[parse_ciphertext(new).dek_hex].kek_version == 2
    assert env.decrypt("ds", "c", 1, old) == "before"  # old rows still read


def test_rewrap_moves_wrapped_deks_and_is_idempotent(env: Envelope, local_ring: keymgmt.LocalKeyring) -> None:
    ct = env.encrypt("ds", "c", 1, "v")
    local_ring.rotate(keymgmt.DEFAULT_KEK)
    assert env.rewrap() == (1, 1)
    assert env.rewrap() == (0, 0)
    row = env.store.get(parse_ciphertext(ct).dek_hex)
    assert row.kek_version == 2 and row.wrapped.startswith("ztcp:v2:") and row.origin_kek_version == 1
    local_ring.set_min_decryption_version(keymgmt.DEFAULT_KEK, 2)
    env.clear_cache()
    assert env.decrypt("ds", "c", 1, ct) == "v"


def test_cache_ttl_and_unknown_dek(tmp_path: Path, local_ring: keymgmt.LocalKeyring) -> None:
    now = [0.0]
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    env = Envelope(local_ring, engine, cache_ttl=10, clock=lambda: now[0])
    ct = env.encrypt("ds", "c", 1, "v")
    dek = parse_ciphertext(ct).dek_hex
    with engine.begin() as c:  # the key table loses the DEK: a cached copy still serves until TTL
        c.execute(sa.text("DELETE FROM ztcp_deks WHERE dek_id = :d"), {"d": dek})
    assert env.decrypt("ds", "c", 1, ct) == "v"
    now[0] = 11.0
    with pytest.raises(CiphertextError, match="unknown data key"):
        env.decrypt("ds", "c", 1, ct)


def test_key_table_holds_only_wrapped_keys(env: Envelope) -> None:
    env.encrypt("ds", "c", 1, "v")
    (row,) = env.store.all()
    assert row.wrapped.startswith("ztcp:v1:") and row.provider == "local"
    dek = env._cache[row.dek_id][0]  # the unwrapped key never reaches the table
    assert dek is not None and row.wrapped.encode() != b""


def test_non_text_refused(env: Envelope) -> None:
    with pytest.raises(keymgmt.KeyMgmtError, match="only text"):
        env.encrypt_row("ds", 1, {"c": 42})  # type: ignore[dict-item]
    with pytest.raises(keymgmt.KeyMgmtError, match="only text"):
        env.encrypt_many("ds", "c", [(1, b"bytes")])  # type: ignore[list-item]


def test_roundtrip_any_text_any_pk(tmp_path: Path, local_ring: keymgmt.LocalKeyring) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    env = Envelope(local_ring, keymgmt.make_engine(f"sqlite:///{tmp_path / 'h.db'}"))

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=200), st.one_of(st.integers(), st.text(max_size=30)), st.text(min_size=1, max_size=20))
    def check(value: str, pk: object, column: str) -> None:
        ct = env.encrypt("ds", column, pk, value)
        assert env.decrypt("ds", column, pk, ct) == value
        (dek, cts), = env.encrypt_rows("ds", [column], [(pk, [value])])
        assert parse_ciphertext(cts[0]).dek_hex == dek and env.decrypt("ds", column, pk, cts[0]) == value

    check()
