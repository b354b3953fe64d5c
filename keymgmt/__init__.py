"""Field encryption: key providers (local keyring; Vault/OpenBao transit), envelope encryption,
blind indexes, the encrypted-table adapter, decrypt-with-decision, and rotate / rewrap /
re-encrypt / retire jobs with key audit events, and the batch gate for government exchanges."""

from contracts.key_event import KeyAuditEvent, KeyAuditType
from keymgmt.audit import KeyAuditLog, default_audit_path
from keymgmt.batch import BatchGrant, BatchReader
from keymgmt.blind_index import BlindIndexer, BlindIndexKeys, normalise
from keymgmt.ciphertext import ParsedCiphertext, format_ciphertext, is_ciphertext, parse_ciphertext
from keymgmt.db import make_engine
from keymgmt.envelope import DEFAULT_KEK, Envelope
from keymgmt.errors import (
    CiphertextError,
    DecryptRefused,
    KeyExists,
    KeyMgmtError,
    KeyNotFound,
    KeyringCorrupt,
    KeyringDiffers,
    KeyTypeMismatch,
    KeyVersionUnavailable,
    MasterKeyError,
    MasterKeyMismatch,
    ProviderError,
    ProviderMisconfigured,
    ProviderUnavailable,
    RetireRefused,
    TableJobError,
)
from keymgmt.gate import EventRecorder, ProtectedReader
from keymgmt.jobs import (
    JobResult,
    VerifyReport,
    encrypt_table,
    reencrypt,
    retire,
    retire_dependencies,
    table_status,
    verify_table,
)
from keymgmt.keyring import (
    KEY_TYPES,
    KeyInfo,
    LocalKeyring,
    default_keyring_path,
    load_master_key,
    open_local_keyring,
)
from keymgmt.masking import apply_masks, mask_value
from keymgmt.provider import KeyProvider
from keymgmt.signing import TransitSigningKey
from keymgmt.table import EncryptedTable, TableSpec, load_spec, registered_specs
from keymgmt.vault import VaultProvider

DEFAULT_BLIND_INDEX_KEY = "blind-index"  # also the citizen_ref key (docs/design.md, Contracts)

__all__ = [
    "DEFAULT_BLIND_INDEX_KEY",
    "DEFAULT_KEK",
    "KEY_TYPES",
    "BatchGrant",
    "BatchReader",
    "BlindIndexKeys",
    "BlindIndexer",
    "CiphertextError",
    "DecryptRefused",
    "EncryptedTable",
    "Envelope",
    "EventRecorder",
    "JobResult",
    "KeyAuditEvent",
    "KeyAuditLog",
    "KeyAuditType",
    "KeyExists",
    "KeyInfo",
    "KeyMgmtError",
    "KeyNotFound",
    "KeyProvider",
    "KeyTypeMismatch",
    "KeyVersionUnavailable",
    "KeyringCorrupt",
    "KeyringDiffers",
    "LocalKeyring",
    "MasterKeyError",
    "MasterKeyMismatch",
    "ParsedCiphertext",
    "ProtectedReader",
    "ProviderError",
    "ProviderMisconfigured",
    "ProviderUnavailable",
    "RetireRefused",
    "TableJobError",
    "TableSpec",
    "TransitSigningKey",
    "VaultProvider",
    "VerifyReport",
    "apply_masks",
    "default_audit_path",
    "default_keyring_path",
    "encrypt_table",
    "format_ciphertext",
    "is_ciphertext",
    "load_master_key",
    "load_spec",
    "make_engine",
    "mask_value",
    "normalise",
    "open_local_keyring",
    "parse_ciphertext",
    "reencrypt",
    "registered_specs",
    "retire",
    "retire_dependencies",
    "table_status",
    "verify_table",
]
