"""The cluster's keyring in PostgreSQL (``keymgmt.shared_keyring``): one set of keys for every replica,
sealed by the master key, refused with the wrong master key or a home keyring of other keys."""

from __future__ import annotations

import base64
import json
import os

import psycopg
import pytest

from keymgmt import KeyringDiffers, LocalKeyring, MasterKeyMismatch
from keymgmt.shared_keyring import MIGRATIONS, SharedKeyring
from pdp.errors import StoreUnavailable
from pdp.storage import migrate_pg

MASTER = os.urandom(32)


def _open(url: str, master: bytes = MASTER, **kw) -> SharedKeyring:  # noqa: ANN003
    return SharedKeyring.open_shared(url, "keyring", master, **kw)


def test_keys_made_or_rotated_on_one_replica_are_used_on_another_at_once(pg_dsn) -> None:  # noqa: ANN001
    a, b = _open(pg_dsn), _open(pg_dsn)
    a.ensure("decision-signing", "ed25519")
    a.ensure("data-kek", "aes256-gcm96")
    msg = b"signed by replica a"
    sig = a.ed25519_private("decision-signing").sign(msg)
    (public,) = b.ed25519_public_keys("decision-signing").values()
    public.verify(sig, msg)  # raises if b had other keys
    assert b.unwrap("data-kek", a.wrap("data-kek", b"dek")) == b"dek"
    assert a.rotate("data-kek") == 2
    wrapped = a.wrap("data-kek", b"dek2")
    assert wrapped.startswith("ztcp:v2:")
    assert b.unwrap("data-kek", wrapped) == b"dek2"  # a version b had not seen yet: looked up, not refused
    assert b.ensure("data-kek", "aes256-gcm96").latest_version == 2


def test_the_database_holds_the_keyring_sealed_only(pg_dsn) -> None:  # noqa: ANN001
    ring = _open(pg_dsn)
    ring.ensure("idp-signing", "ed25519")
    ring.ensure("blind-index", "hmac")
    with psycopg.connect(pg_dsn) as conn:
        doc, kcv = conn.execute("SELECT doc, kcv FROM ztcp_bootstrap WHERE name = 'keyring'").fetchone()
    sealed = json.loads(bytes(doc))
    assert set(sealed) == {"format", "v", "kcv", "nonce", "ct"} and sealed["kcv"] == kcv
    material = base64.b64decode(ring._fresh()["keys"]["blind-index"]["versions"]["1"]["material"])
    assert material not in bytes(doc) and base64.b64encode(material) not in bytes(doc)
    assert b"idp-signing" not in bytes(doc)  # not even the key names


def test_a_replica_with_another_master_key_is_refused_and_changes_nothing(pg_dsn) -> None:  # noqa: ANN001
    _open(pg_dsn).ensure("decision-signing", "ed25519")
    with psycopg.connect(pg_dsn) as conn:
        before = conn.execute("SELECT doc, version FROM ztcp_bootstrap").fetchall()
    other = os.urandom(32)
    with pytest.raises(MasterKeyMismatch) as caught:
        _open(pg_dsn, other)
    message = str(caught.value)
    assert "of the cluster" in message and "ZTCP_MASTER_KEY" in message and caught.value.exit_code == 2
    assert base64.b64encode(other).decode() not in message and "postgresql://" not in message
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT doc, version FROM ztcp_bootstrap").fetchall() == before


def test_the_first_replica_brings_its_home_keyring_and_later_ones_must_match_it(pg_dsn, tmp_path) -> None:  # noqa: ANN001
    home = LocalKeyring.open(tmp_path / "keyring.sealed", MASTER)
    home.ensure("data-kek", "aes256-gcm96")
    home.ensure("decision-signing", "ed25519")
    wrapped = home.wrap("data-kek", b"an existing table's dek")
    cluster = _open(pg_dsn, seed=tmp_path / "keyring.sealed")
    assert cluster.unwrap("data-kek", wrapped) == b"an existing table's dek"  # existing data stays readable
    # A copy of that home joins: the same keys, accepted.
    _open(pg_dsn, seed=tmp_path / "keyring.sealed").close()
    # A home of another installation (same master key, its own keys): refused, naming the keys.
    (tmp_path / "other").mkdir()
    stranger = LocalKeyring.open(tmp_path / "other" / "keyring.sealed", MASTER)
    stranger.ensure("decision-signing", "ed25519")
    stranger.ensure("idp-signing", "ed25519")
    with pytest.raises(KeyringDiffers) as caught:
        _open(pg_dsn, seed=tmp_path / "other" / "keyring.sealed")
    assert caught.value.names == ["decision-signing", "idp-signing"] and caught.value.exit_code == 2
    # A home keyring this master key does not open is named, never copied into the cluster.
    (tmp_path / "third").mkdir()
    LocalKeyring.open(tmp_path / "third" / "keyring.sealed", os.urandom(32))
    with pytest.raises(MasterKeyMismatch, match="third"):
        _open(pg_dsn, seed=tmp_path / "third" / "keyring.sealed")


def test_an_older_schema_holding_a_keyring_is_upgraded_with_it(pg_dsn, tmp_path) -> None:  # noqa: ANN001
    home = LocalKeyring.open(tmp_path / "keyring.sealed", MASTER)
    home.ensure("decision-signing", "ed25519")
    with psycopg.connect(pg_dsn) as conn:
        migrate_pg(conn, "bootstrap", MIGRATIONS[:1])  # version 1: no kcv column yet
        conn.execute("INSERT INTO ztcp_bootstrap (name, doc, version) VALUES ('keyring', %s, 7)",
                     ((tmp_path / "keyring.sealed").read_bytes(),))
    ring = _open(pg_dsn)
    assert ring.ed25519_public_keys("decision-signing") == home.ed25519_public_keys("decision-signing")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT version FROM ztcp_schema WHERE component = 'bootstrap'").fetchone()[0] == 2
        kcv, version = conn.execute("SELECT kcv, version FROM ztcp_bootstrap").fetchone()
    assert kcv == json.loads((tmp_path / "keyring.sealed").read_bytes())["kcv"] and version == 7


def test_database_down_keeps_the_keys_it_has_and_a_new_replica_cannot_start(pg_factory) -> None:  # noqa: ANN001
    cluster = pg_factory()
    url = cluster.url(cluster.create_database())
    ring = _open(url)
    ring.ensure("data-kek", "aes256-gcm96")
    wrapped = ring.wrap("data-kek", b"dek")
    ring.refresh_seconds = 0  # ask the database every time: it is down
    cluster.stop()
    assert ring.unwrap("data-kek", wrapped) == b"dek"
    with pytest.raises(StoreUnavailable):
        _open(url)
    cluster.start()
    assert ring.unwrap("data-kek", wrapped) == b"dek"


def test_a_replayed_older_keyring_row_is_refused_by_a_replica_that_saw_a_newer_one(pg_dsn) -> None:  # noqa: ANN001
    from keymgmt import KeyringCorrupt

    a = _open(pg_dsn)
    a.ensure("data-kek", "aes256-gcm96")
    with psycopg.connect(pg_dsn) as conn:
        old = conn.execute("SELECT doc FROM ztcp_bootstrap WHERE name = 'keyring'").fetchone()[0]
    a.rotate("data-kek")
    a.set_min_decryption_version("data-kek", 2)  # version 1 retired
    b = _open(pg_dsn)
    assert b.info("data-kek").min_decryption_version == 2
    with psycopg.connect(pg_dsn) as conn:  # a database writer puts the old sealed document back
        conn.execute("UPDATE ztcp_bootstrap SET doc = %s, version = version + 1 WHERE name = 'keyring'", (old,))
    with pytest.raises(KeyringCorrupt, match="older sealed state"):
        b._fresh(force=True)
