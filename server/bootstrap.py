"""First-start bootstrap: the system keys every component needs, kept in the sealed keyring.

Keys are created on first use and never written unsealed: the keyring file is AES-256-GCM sealed
under the master key (``ZTCP_MASTER_KEY`` or ``ZTCP_HOME/master.key``, 0600). Each role has its own
key, so a leaked decision-signing key does not forge checkpoints and vice versa.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keymgmt import LocalKeyring, default_keyring_path, load_master_key
from server.errors import ConfigError
from server.settings import Settings

IDP_SIGNING = "idp-signing"
DECISION_SIGNING = "decision-signing"
CHECKPOINT_SIGNING = "checkpoint-signing"
BUNDLE_SIGNING = "bundle-signing"
EXCHANGE_SIGNING = "exchange-signing"  # transfer records (exchange/); in Vault transit when configured
BLIND_INDEX = "blind-index"
DATA_KEK = "data-kek"

_SYSTEM_KEYS = {
    IDP_SIGNING: "ed25519",
    DECISION_SIGNING: "ed25519",
    CHECKPOINT_SIGNING: "ed25519",
    BUNDLE_SIGNING: "ed25519",
    EXCHANGE_SIGNING: "ed25519",
    BLIND_INDEX: "hmac",
    DATA_KEK: "aes256-gcm96",
}


def open_keyring(settings: Settings) -> LocalKeyring:
    home = settings.ensure_home()
    master = load_master_key(home, settings.master_key.get_secret_value() if settings.master_key else None)
    return LocalKeyring.open(default_keyring_path(home), master)


@dataclass
class SystemKeys:
    """Lazy accessors over the keyring; each key is created on first need."""

    keyring: LocalKeyring
    # The checkpoint key sealed apart from master.key (ZTCP_CHECKPOINT_SEALING_KEY), if configured.
    checkpoint_ring: LocalKeyring | None = None

    def _ring(self, name: str) -> LocalKeyring:
        return self.checkpoint_ring if name == CHECKPOINT_SIGNING and self.checkpoint_ring else self.keyring

    def _ensure(self, name: str) -> None:
        self._ring(name).ensure(name, _SYSTEM_KEYS[name])

    def ensure_all(self) -> None:
        for name in _SYSTEM_KEYS:
            self._ensure(name)

    def _ed25519(self, name: str) -> Ed25519PrivateKey:
        self._ensure(name)
        return self._ring(name).ed25519_private(name)

    def public_keys(self, name: str) -> list[Ed25519PublicKey]:
        self._ensure(name)
        return list(self._ring(name).ed25519_public_keys(name).values())

    @cached_property
    def idp_signing(self) -> Ed25519PrivateKey:
        return self._ed25519(IDP_SIGNING)

    @cached_property
    def decision_signing(self) -> Ed25519PrivateKey:
        return self._ed25519(DECISION_SIGNING)

    @cached_property
    def checkpoint_signing(self) -> Ed25519PrivateKey:
        return self._ed25519(CHECKPOINT_SIGNING)

    @cached_property
    def bundle_signing(self) -> Ed25519PrivateKey:
        return self._ed25519(BUNDLE_SIGNING)

    @cached_property
    def exchange_signing(self) -> Ed25519PrivateKey:
        return self._ed25519(EXCHANGE_SIGNING)

    @cached_property
    def blind_index(self) -> bytes:
        self._ensure(BLIND_INDEX)
        return self.keyring.hmac_key(BLIND_INDEX)


CHECKPOINT_KEYRING_FILE = "checkpoint-keyring.sealed"


def system_keys(settings: Settings) -> SystemKeys:
    """The system keys; the checkpoint key in a keyring of its own when ZTCP_CHECKPOINT_SEALING_KEY is
    given — sealed by a key that is never written to the home, so a copy of the home (a disk, a
    backup, an administrator without the service's secrets) holds no key that can sign checkpoints."""
    checkpoint_ring = None
    if settings.checkpoint_sealing_key is not None:
        try:
            key = base64.b64decode(settings.checkpoint_sealing_key.get_secret_value(), validate=True)
        except (ValueError, binascii.Error):
            key = b""
        if len(key) != 32:
            raise ConfigError("ZTCP_CHECKPOINT_SEALING_KEY must be 32 bytes, base64")
        checkpoint_ring = LocalKeyring.open(settings.ensure_home() / CHECKPOINT_KEYRING_FILE, key)
    return SystemKeys(open_keyring(settings), checkpoint_ring)
