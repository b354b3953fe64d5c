"""Checkpoints signed inside OpenBao transit: the private key never reaches the ledger's host.

Real OpenBao (``bao server -dev``), the real ledger, and the CLI's composition root
(``ledger_from_settings``), so the wiring a bureau deploys is what is tested.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

import contracts
import keymgmt
import provenance
from cli.main import ztcp
from provenance.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from server.bootstrap import CHECKPOINT_SIGNING, system_keys
from server.errors import ConfigError
from server.ledger import ledger_from_settings
from server.settings import load_settings

CREF = "cr_" + "A" * 52


def _events(n: int, start: int = 0) -> list[contracts.ProvenanceEvent]:
    return [contracts.ProvenanceEvent(type="pii.read", actor="emp-1", citizen_ref=CREF, dataset="insured_persons",
                                       record_id=str(start + i), fields=["name"], purpose="benefit_review",
                                       time=datetime.now(UTC)) for i in range(n)]


def _settings(bao, mount: str, token: str | None = None, **kw):
    return load_settings(vault_addr=bao.addr, vault_token=token or bao.token, vault_mount=mount, **kw)


def test_transit_key_signs_with_its_pinned_version(bao_server, transit_mount) -> None:
    p = keymgmt.VaultProvider(bao_server.addr, token=bao_server.token, mount=transit_mount)
    p.create("cp", "ed25519")
    key = keymgmt.TransitSigningKey(p, "cp")
    p.rotate("cp")  # someone rotates in Vault while we run: our key id must stay true
    sig = key.sign(b"note body\n")
    key.public_key().verify(sig, b"note body\n")
    assert key.version == 1 and keymgmt.TransitSigningKey(p, "cp").version == 2
    with pytest.raises(keymgmt.KeyVersionUnavailable):
        keymgmt.TransitSigningKey(p, "cp", version=9)
    with pytest.raises(keymgmt.KeyNotFound):
        keymgmt.TransitSigningKey(p, "nope")


def test_checkpoints_are_signed_in_vault_and_a_locally_signed_one_is_refused(bao_server, transit_mount) -> None:
    settings = _settings(bao_server, transit_mount)
    assert settings.checkpoint_in_vault
    with ledger_from_settings(settings) as led:
        led.append(_events(5))
        cp = led.checkpoint()
        vault_keys = keymgmt.VaultProvider(bao_server.addr, token=bao_server.token,
                                           mount=transit_mount).ed25519_public_keys(CHECKPOINT_SIGNING)
        assert led.signer.public_raw == vault_keys[1].public_bytes_raw()
        assert provenance.verify_ledger(led).checkpoints == 1
        # Whoever holds the host's keyring signs a checkpoint of their own: it is not trusted.
        local = system_keys(settings).checkpoint_signing
        forged = sign_checkpoint(Checkpoint(led.origin, cp.size, cp.root), NoteSigner(local, led.signer.name))
        path = led.path
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (forged, cp.size))
    db.close()
    with ledger_from_settings(settings) as led, pytest.raises(provenance.IntegrityError) as exc:
        provenance.verify_ledger(led)
    assert exc.value.kind == "forged-checkpoint"
    env = {"ZTCP_HOME": str(settings.home), "ZTCP_VAULT_ADDR": bao_server.addr, "ZTCP_VAULT_TOKEN": bao_server.token,
           "ZTCP_VAULT_MOUNT": transit_mount}
    res = CliRunner().invoke(ztcp, ["audit", "verify"], env=env)
    assert res.exit_code == 3 and "ZTCP_CHECKPOINT_TRUST_LOCAL=true" in res.output  # the way out, if it is that
    # ...unless the operator says the ledger was signed locally before it moved to Vault.
    with ledger_from_settings(_settings(bao_server, transit_mount, checkpoint_trust_local=True)) as led:
        assert provenance.verify_ledger(led).checkpoints == 1


def test_appends_go_on_when_the_key_cannot_sign_and_the_next_checkpoint_covers_them(
        bao_server, transit_mount) -> None:
    client = bao_server.client()
    client.sys.create_or_update_policy("ckpt", f'path "{transit_mount}/*" {{ capabilities = ["create", "read", '
                                                f'"update", "list"] }}')
    token = client.auth.token.create(policies=["ckpt"], ttl="10m")["auth"]["client_token"]
    with ledger_from_settings(_settings(bao_server, transit_mount, token=token)) as led:
        led.append(_events(3))
        first = led.checkpoint()
        client.auth.token.revoke(token)  # the key server now refuses this host

        started = time.monotonic()
        receipts = led.append(_events(4, start=3))  # durable without a signature
        assert [r.seq for r in receipts] == [3, 4, 5, 6] and time.monotonic() - started < 2
        with pytest.raises(provenance.CheckpointUnavailable, match="cannot sign a checkpoint"):
            led.checkpoint()
        assert led.checkpoint_error and bao_server.token not in led.checkpoint_error
        assert led.checkpoint_or_latest().size == first.size == 3  # readers degrade to what is signed
        tr = provenance.trace_citizen(led, CREF, checkpoint=led.checkpoint_or_latest())
        assert [t.status for t in tr.events] == ["verified"] * 3 + ["pending"] * 4

    # Access restored (a new token): the next checkpoint covers everything recorded meanwhile.
    with ledger_from_settings(_settings(bao_server, transit_mount)) as led:
        assert led.checkpoint().size == 7 and led.checkpoint_error is None
        report = provenance.verify_ledger(led)
        assert report.checkpoints == 2 and report.unsigned_tail == 0


def test_a_vault_checkpoint_key_without_vault_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="ZTCP_CHECKPOINT_KEY=vault needs ZTCP_VAULT_ADDR"):
        load_settings(checkpoint_key="vault")
    assert not load_settings().checkpoint_in_vault
    assert not load_settings(vault_addr="http://127.0.0.1:1", checkpoint_key="local").checkpoint_in_vault
