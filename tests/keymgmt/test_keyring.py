"""The local keyring: sealing, master key handling, versions, concurrency across processes."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import keymgmt
from keymgmt import (
    CiphertextError,
    KeyExists,
    KeyNotFound,
    KeyringCorrupt,
    KeyTypeMismatch,
    KeyVersionUnavailable,
    LocalKeyring,
    MasterKeyError,
    MasterKeyMismatch,
    load_master_key,
)


@pytest.fixture
def master() -> bytes:
    return os.urandom(32)


@pytest.fixture
def ring(tmp_path: Path, master: bytes) -> LocalKeyring:
    return LocalKeyring.open(tmp_path / "keyring.sealed", master)


def test_file_is_0600_and_holds_no_material(ring: LocalKeyring) -> None:
    ring.create("kek", "aes256-gcm96")
    ring.create("bi", "hmac")
    assert ring.path.stat().st_mode & 0o777 == 0o600
    raw = ring.path.read_bytes()
    material = base64.b64encode(ring.hmac_key("bi"))
    assert material not in raw and ring.hmac_key("bi") not in raw
    assert b"kek" not in raw  # key names are sealed too


def test_wrong_master_key_is_clear_and_overwrites_nothing(tmp_path: Path, master: bytes) -> None:
    path = tmp_path / "keyring.sealed"
    LocalKeyring.open(path, master).create("kek", "aes256-gcm96")
    before = path.read_bytes()
    with pytest.raises(MasterKeyMismatch, match="different master key") as exc:
        LocalKeyring.open(path, os.urandom(32))
    assert exc.value.exit_code == 2
    assert path.read_bytes() == before
    assert LocalKeyring.open(path, master).exists("kek")


def test_tampered_file_is_integrity_error(tmp_path: Path, master: bytes) -> None:
    path = tmp_path / "keyring.sealed"
    LocalKeyring.open(path, master).create("kek", "aes256-gcm96")
    doc = path.read_text()
    import json

    d = json.loads(doc)
    ct = bytearray(base64.b64decode(d["ct"]))
    ct[5] ^= 1
    d["ct"] = base64.b64encode(bytes(ct)).decode()
    path.write_text(json.dumps(d))
    with pytest.raises(KeyringCorrupt) as exc:
        LocalKeyring.open(path, master)
    assert exc.value.exit_code == 3
    path.write_text("garbage")
    with pytest.raises(KeyringCorrupt):
        LocalKeyring.open(path, master)


def test_master_key_from_env_value(tmp_path: Path) -> None:
    key = os.urandom(32)
    assert load_master_key(tmp_path, base64.b64encode(key).decode()) == key
    with pytest.raises(MasterKeyError, match="base64"):
        load_master_key(tmp_path, "not base64!!")
    with pytest.raises(MasterKeyError, match="32 bytes"):
        load_master_key(tmp_path, base64.b64encode(b"short").decode())
    assert not (tmp_path / "master.key").exists()


def test_master_key_file_created_0600_and_stable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    k1 = load_master_key(home, None)
    path = home / "master.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_master_key(home, None) == k1 and len(k1) == 32
    assert load_master_key(home, "") == k1  # empty env value = not set


def test_master_key_file_readable_by_others_refused(tmp_path: Path) -> None:
    load_master_key(tmp_path, None)
    os.chmod(tmp_path / "master.key", 0o640)
    with pytest.raises(MasterKeyError, match="group/others"):
        load_master_key(tmp_path, None)


def test_create_ensure_rotate_list(ring: LocalKeyring) -> None:
    info = ring.create("kek", "aes256-gcm96")
    assert (info.latest_version, info.min_decryption_version, info.rotated_at) == (1, 1, None)
    with pytest.raises(KeyExists):
        ring.create("kek", "aes256-gcm96")
    assert ring.ensure("kek", "aes256-gcm96").latest_version == 1
    with pytest.raises(KeyTypeMismatch):
        ring.ensure("kek", "hmac")
    assert ring.rotate("kek") == 2
    assert ring.rotate("kek") == 3
    ring.ensure("sig", "ed25519")
    listed = {k.name: k for k in ring.list()}
    assert listed["kek"].latest_version == 3 and listed["kek"].rotated_at is not None
    assert listed["sig"].type == "ed25519"
    with pytest.raises(KeyNotFound):
        ring.rotate("nope")
    with pytest.raises(keymgmt.KeyMgmtError):
        ring.create("bad name/..", "hmac")
    with pytest.raises(keymgmt.KeyMgmtError, match="unknown key type"):
        ring.create("x", "rsa")


def test_wrap_unwrap_versions_and_min_decryption(ring: LocalKeyring) -> None:
    ring.create("kek", "aes256-gcm96")
    dek, wrapped = ring.generate_datakey("kek")
    assert wrapped.startswith("ztcp:v1:") and len(dek) == 32
    assert ring.unwrap("kek", wrapped) == dek
    ring.rotate("kek")
    re = ring.rewrap("kek", wrapped)
    assert re.startswith("ztcp:v2:") and ring.unwrap("kek", re) == dek
    ring.set_min_decryption_version("kek", 2)
    with pytest.raises(KeyVersionUnavailable, match="minimum decryption version"):
        ring.unwrap("kek", wrapped)
    assert ring.unwrap("kek", re) == dek
    with pytest.raises(keymgmt.KeyMgmtError):
        ring.set_min_decryption_version("kek", 3)


def test_wrap_context_and_tamper(ring: LocalKeyring) -> None:
    ring.create("kek", "aes256-gcm96")
    ring.create("other", "aes256-gcm96")
    w = ring.wrap("kek", b"k" * 32, context=b"dataset-a")
    with pytest.raises(CiphertextError):
        ring.unwrap("kek", w, context=b"dataset-b")
    with pytest.raises(CiphertextError):
        ring.unwrap("other", w, context=b"dataset-a")
    blob = bytearray(base64.b64decode(w.split(":")[2]))
    blob[-1] ^= 1
    with pytest.raises(CiphertextError):
        ring.unwrap("kek", "ztcp:v1:" + base64.b64encode(bytes(blob)).decode(), context=b"dataset-a")
    for bad in ("", "vault:v1:AAAA", "ztcp:v0:AAAA", "ztcp:v1:@@@", "ztcp:v1:AAAA"):
        with pytest.raises(CiphertextError):
            ring.unwrap("kek", bad)


def test_ed25519_and_hmac(ring: LocalKeyring) -> None:
    ring.create("sig", "ed25519")
    k1 = ring.ed25519_private("sig")
    assert isinstance(k1, Ed25519PrivateKey)
    ring.rotate("sig")
    k2 = ring.ed25519_private("sig")
    pubs = ring.ed25519_public_keys("sig")
    assert list(pubs) == [1, 2]
    sig = k1.sign(b"m")
    pubs[1].verify(sig, b"m")
    assert k2.sign(b"m") != sig
    ring.set_min_decryption_version("sig", 2)
    assert list(ring.ed25519_public_keys("sig")) == [2]
    with pytest.raises(KeyVersionUnavailable):
        ring.ed25519_private("sig", version=1)
    ring.create("bi", "hmac")
    h1 = ring.hmac_key("bi")
    ring.rotate("bi")
    assert ring.hmac_key("bi") != h1 and ring.hmac_key("bi", 1) == h1
    with pytest.raises(KeyTypeMismatch):
        ring.hmac_key("sig")


def test_second_instance_sees_changes(tmp_path: Path, master: bytes) -> None:
    a = LocalKeyring.open(tmp_path / "k", master)
    b = LocalKeyring.open(tmp_path / "k", master)
    a.create("kek", "aes256-gcm96")
    assert b.exists("kek")
    b.rotate("kek")
    assert a.info("kek").latest_version == 2


_WORKER = """
import os, sys, base64
from pathlib import Path
from keymgmt import LocalKeyring
ring = LocalKeyring.open(Path(sys.argv[1]), base64.b64decode(os.environ["TEST_MASTER"]))
ring.ensure("shared", "aes256-gcm96")
for _ in range(int(sys.argv[2])):
    ring.rotate("shared")
ring.ensure(sys.argv[3], "hmac")
"""


def test_concurrent_processes_lose_no_update(tmp_path: Path, master: bytes) -> None:
    path = tmp_path / "k"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), "15", f"own{i}"],
            env={**os.environ, "TEST_MASTER": base64.b64encode(master).decode()},  # secrets never in argv
        )
        for i in range(4)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    ring = LocalKeyring.open(path, master)
    assert ring.info("shared").latest_version == 1 + 4 * 15
    assert {f"own{i}" for i in range(4)} <= {k.name for k in ring.list()}
    assert path.stat().st_mode & 0o777 == 0o600


def test_wrapped_parser_fuzz() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from keymgmt.keyring import parse_wrapped

    @given(st.text(max_size=80))
    def check(s: str) -> None:
        try:
            version, blob = parse_wrapped(s)
        except CiphertextError:
            return
        assert s.startswith(f"ztcp:v{version}:") and len(blob) >= 28

    check()


def test_master_key_file_of_another_user_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown the key file to another user")
    load_master_key(tmp_path, None)
    os.chown(tmp_path / "master.key", 65534, 65534)
    with pytest.raises(MasterKeyError, match="owned by another user"):
        load_master_key(tmp_path, None)
