"""Configuration errors are one clear line naming the variable, never a traceback or the value."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import ztcp
from server.settings import load_settings


def test_a_bad_setting_names_the_variable_not_its_value(monkeypatch) -> None:
    monkeypatch.setenv("ZTCP_ENGINE_TIMEOUT_MS", "fifty-seven")
    res = CliRunner().invoke(ztcp, ["audit", "verify"])
    assert res.exit_code == 1
    assert "invalid configuration: ZTCP_ENGINE_TIMEOUT_MS" in res.output
    assert "fifty-seven" not in res.output and "Traceback" not in res.output


def test_a_vault_checkpoint_key_needs_vault(monkeypatch) -> None:
    monkeypatch.setenv("ZTCP_CHECKPOINT_KEY", "vault")
    res = CliRunner().invoke(ztcp, ["audit", "checkpoint"])
    assert res.exit_code == 1
    assert "ZTCP_CHECKPOINT_KEY=vault needs ZTCP_VAULT_ADDR" in res.output



def test_the_checkpoint_key_can_be_sealed_apart_from_the_master_key(ztcp_home, monkeypatch) -> None:  # noqa: ANN001
    """Issue #13 finding 4: with ZTCP_CHECKPOINT_SEALING_KEY the checkpoint key is in a keyring of its
    own, which the home's master.key does not open; without that secret the home cannot sign."""
    import base64
    import os

    from keymgmt import KeyMgmtError, LocalKeyring, load_master_key
    from server.bootstrap import CHECKPOINT_KEYRING_FILE, CHECKPOINT_SIGNING, system_keys

    sealing = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("ZTCP_CHECKPOINT_SEALING_KEY", sealing)
    keys = system_keys(load_settings())
    public = keys.checkpoint_signing.public_key()
    assert keys.public_keys(CHECKPOINT_SIGNING)[0].public_bytes_raw() == public.public_bytes_raw()
    assert not keys.keyring.exists(CHECKPOINT_SIGNING)  # not in the master-key keyring
    master = load_master_key(ztcp_home, None)
    try:
        LocalKeyring.open(ztcp_home / CHECKPOINT_KEYRING_FILE, master)
        opened = True
    except KeyMgmtError:
        opened = False
    assert not opened  # master.key does not open the checkpoint keyring
    monkeypatch.setenv("ZTCP_CHECKPOINT_SEALING_KEY", "c2hvcnQ=")
    with pytest.raises(Exception, match="ZTCP_CHECKPOINT_SEALING_KEY must be 32 bytes"):
        system_keys(load_settings())
