"""The key-provider interface: what envelope encryption, blind indexes and the admin CLI need of a KMS.

Two implementations keep the same semantics (named keys with versions, rotation, a minimum
decryption version, version-tagged wrapped values): :class:`keymgmt.LocalKeyring` (embedded) and
:class:`keymgmt.VaultProvider` (Vault / OpenBao transit).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keymgmt.keyring import KeyInfo


@runtime_checkable
class KeyProvider(Protocol):
    provider_name: str

    def create(self, name: str, type: str) -> KeyInfo: ...  # noqa: A002

    def ensure(self, name: str, type: str) -> KeyInfo: ...  # noqa: A002

    def rotate(self, name: str) -> int: ...

    def list(self) -> list[KeyInfo]: ...

    def info(self, name: str) -> KeyInfo: ...

    def exists(self, name: str) -> bool: ...

    def set_min_decryption_version(self, name: str, n: int) -> None: ...

    # KEK operations. A wrapped value names its key version (``ztcp:v3:…`` / ``vault:v3:…``).
    def generate_datakey(self, name: str, bits: int = 256) -> tuple[bytes, str]: ...

    def wrap(self, name: str, plaintext: bytes) -> str: ...

    def unwrap(self, name: str, wrapped: str) -> bytes: ...

    def wrap_many(self, name: str, plaintexts: Sequence[bytes]) -> builtins.list[str]: ...

    def unwrap_many(self, name: str, wrapped: Sequence[str]) -> builtins.list[bytes]: ...

    def rewrap_many(self, name: str, wrapped: Sequence[str]) -> builtins.list[str]: ...

    def wrapped_version(self, wrapped: str) -> int: ...

    # HMAC (blind index) and signing keys.
    def hmac_key(self, name: str, version: int | None = None) -> bytes: ...

    def ed25519_public_keys(self, name: str) -> dict[int, Ed25519PublicKey]: ...
