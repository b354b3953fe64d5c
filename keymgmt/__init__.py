"""Field encryption: key providers (local keyring; Vault/OpenBao transit), envelope encryption,
blind indexes, the encrypted-table adapter, and rotate / rewrap / re-encrypt / retire."""

from keymgmt.errors import (
    CiphertextError,
    DecryptRefused,
    KeyExists,
    KeyMgmtError,
    KeyNotFound,
    KeyringCorrupt,
    KeyTypeMismatch,
    KeyVersionUnavailable,
    MasterKeyError,
    MasterKeyMismatch,
    ProviderError,
    ProviderUnavailable,
    RetireRefused,
    TableJobError,
)
from keymgmt.keyring import (
    KEY_TYPES,
    KeyInfo,
    LocalKeyring,
    default_keyring_path,
    load_master_key,
)

__all__ = [
    "KEY_TYPES",
    "CiphertextError",
    "DecryptRefused",
    "KeyExists",
    "KeyInfo",
    "KeyMgmtError",
    "KeyNotFound",
    "KeyTypeMismatch",
    "KeyVersionUnavailable",
    "KeyringCorrupt",
    "LocalKeyring",
    "MasterKeyError",
    "MasterKeyMismatch",
    "ProviderError",
    "ProviderUnavailable",
    "RetireRefused",
    "TableJobError",
    "default_keyring_path",
    "load_master_key",
]
