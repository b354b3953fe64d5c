"""Transfer records signed inside OpenBao transit (real `bao server -dev`): with Vault configured the
exchange's signing key never reaches this host, and the JWS verifies with its public key alone."""

from __future__ import annotations

from exchange.crypto import sign_jws, verify_jws
from server.bootstrap import EXCHANGE_SIGNING
from server.exchange import exchange_signer
from server.settings import load_settings


def test_the_exchange_signs_transfer_records_in_transit(bao_server, transit_mount) -> None:
    settings = load_settings(vault_addr=bao_server.addr, vault_token=bao_server.token, vault_mount=transit_mount)
    signer = exchange_signer(settings, keys=None)  # no local keyring needed: the key is Vault's
    assert signer.name == EXCHANGE_SIGNING and signer.version >= 1
    token = sign_jws(signer, b'{"transfer_id":"xfer_1"}', "ztcp-transfer+jws")
    assert verify_jws(token, signer.public_key(), "ztcp-transfer+jws", "t") == b'{"transfer_id":"xfer_1"}'
