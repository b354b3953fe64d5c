"""First-start bootstrap: the system keys every component needs, kept in the sealed keyring.

Keys are created on first use and never written unsealed: the keyring file is AES-256-GCM sealed
under the master key (``ZTCP_MASTER_KEY`` or ``ZTCP_HOME/master.key``, 0600). Each role has its own
key, so a leaked decision-signing key does not forge checkpoints and vice versa.

With ``ZTCP_DATABASE_URL`` the keyring (and the checkpoint keyring of ZTCP_CHECKPOINT_SEALING_KEY)
is the cluster's, in the database, still sealed (:mod:`keymgmt.shared_keyring`): every replica
signs and verifies decision tokens, dev-IdP tokens, bundles and checkpoints with the same keys and
unwraps the same data keys. A replica whose master key does not unseal it, or whose home keyring
holds other keys, refuses to start and says which.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keymgmt import LocalKeyring, default_keyring_path, load_master_key
from server.errors import ConfigError, DatabaseUnreachable
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


CLUSTER_KEYRING = "keyring"  # the row names in ztcp_bootstrap
CLUSTER_CHECKPOINT_KEYRING = "checkpoint-keyring"
_SHARED: dict[tuple[str, str, bytes], LocalKeyring] = {}  # one handle per process and keyring


def open_keyring(settings: Settings) -> LocalKeyring:
    """The system keyring: this home's file, or the cluster's with ``ZTCP_DATABASE_URL``."""
    home = settings.ensure_home()
    master = load_master_key(home, settings.master_key.get_secret_value() if settings.master_key else None)
    if settings.database_url:
        return _shared(settings.database_url, CLUSTER_KEYRING, master, default_keyring_path(home),
                       "ZTCP_MASTER_KEY / master.key")
    return LocalKeyring.open(default_keyring_path(home), master)


def _shared(url: str, name: str, key: bytes, seed: Path, hint: str) -> LocalKeyring:
    from keymgmt.shared_keyring import SharedKeyring
    from pdp.errors import StoreUnavailable

    ring = _SHARED.get((url, name, key))
    if ring is None:
        try:
            ring = SharedKeyring.open_shared(url, name, key, seed=seed, hint=hint)
        except StoreUnavailable as exc:
            raise DatabaseUnreachable(url, str(exc)) from None
        _SHARED[(url, name, key)] = ring
    return ring


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
        path = settings.ensure_home() / CHECKPOINT_KEYRING_FILE
        checkpoint_ring = (_shared(settings.database_url, CLUSTER_CHECKPOINT_KEYRING, key, path,
                                   "ZTCP_CHECKPOINT_SEALING_KEY")
                           if settings.database_url else LocalKeyring.open(path, key))
    return SystemKeys(open_keyring(settings), checkpoint_ring)
