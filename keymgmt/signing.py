"""Ed25519 signing keys held by Vault/OpenBao transit, usable where a private key object would be.

The provenance ledger signs its checkpoints with whatever has ``public_key()`` and ``sign(data)``
(the shape of cryptography's ``Ed25519PrivateKey``). Giving it a :class:`TransitSigningKey` moves the
checkpoint key out of the host: someone with the ledger file, the keyring and the master key can
rewrite history but cannot sign a checkpoint that vouches for it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keymgmt.errors import KeyVersionUnavailable, ProviderError
from keymgmt.vault import VaultProvider


class TransitSigningKey:
    """One version of a transit ``ed25519`` key, pinned when constructed.

    Pinning keeps the public key (and the note key id derived from it) true for every signature
    even if an operator rotates the key in Vault meanwhile; the next start uses the newest version,
    and older versions stay trusted for verification until their minimum decryption version passes.
    """

    def __init__(self, provider: VaultProvider, name: str, version: int | None = None) -> None:
        keys = provider.ed25519_public_keys(name)
        if not keys:
            raise KeyVersionUnavailable(name, version or 0, "no trusted version to sign with")
        self.version = max(keys) if version is None else version
        if self.version not in keys:
            raise KeyVersionUnavailable(name, self.version, "not a trusted version of this key")
        self.name = name
        self._provider = provider
        self._public = keys[self.version]

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        version, signature = self._provider.sign_ed25519(self.name, data, version=self.version)
        if version != self.version:  # the server ignored the pin: the signature would not match our key id
            raise ProviderError(f"transit signed {self.name!r} with version {version}, not {self.version}")
        return signature
