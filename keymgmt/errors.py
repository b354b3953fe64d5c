"""Exceptions of keymgmt. Each carries what an operator needs to act, never key material or field values.

Exit codes follow the README: 1 input/usage, 2 denied/refused, 3 integrity failure.
"""

from __future__ import annotations


class KeyMgmtError(Exception):
    """Base of every keymgmt error."""

    exit_code = 1


class MasterKeyError(KeyMgmtError):
    """The master key is missing, malformed, or its file is unsafe."""


class MasterKeyMismatch(MasterKeyError):
    """The keyring was sealed under a different master key; nothing was read or overwritten."""

    exit_code = 2

    def __init__(self, path: object, hint: str = "ZTCP_MASTER_KEY / master.key") -> None:
        super().__init__(
            f"keyring {path} is sealed under a different master key "
            f"(check {hint}); the keyring was not modified"
        )


class KeyringDiffers(KeyMgmtError):
    """A replica's own keyring file holds keys that differ from its cluster's (ZTCP_DATABASE_URL).

    It would sign tokens and checkpoints no other replica accepts, or hold data keys nobody else has.
    Names the keys, never their material."""

    exit_code = 2

    def __init__(self, path: object, names: list[str]) -> None:
        self.names = names
        super().__init__(
            f"this home's keyring {path} holds signing or data keys that differ from the cluster's "
            f"({', '.join(names)}); refusing to start: move that file away to use the cluster's keys, "
            "or point ZTCP_DATABASE_URL at this installation's own database"
        )


class KeyringCorrupt(KeyMgmtError):
    """The keyring file fails authentication although the master key matches (tampered or truncated)."""

    exit_code = 3


class KeyNotFound(KeyMgmtError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no key named {name!r}")


class KeyExists(KeyMgmtError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a key named {name!r} already exists")


class KeyTypeMismatch(KeyMgmtError):
    def __init__(self, name: str, have: str, want: str) -> None:
        super().__init__(f"key {name!r} is of type {have}, not {want}")


class KeyVersionUnavailable(KeyMgmtError):
    """The requested key version does not exist or is below the minimum decryption version."""

    exit_code = 2

    def __init__(self, name: str, version: int, reason: str) -> None:
        self.name = name
        self.version = version
        self.reason = reason
        super().__init__(f"key {name!r} version {version} unavailable: {reason}")


class ProviderUnavailable(KeyMgmtError):
    """The key provider (Vault/OpenBao) cannot be reached or answered with a server error: fail closed."""

    exit_code = 2


class ProviderError(KeyMgmtError):
    """The key provider refused an operation (permission denied, bad request)."""

    exit_code = 2


class ProviderMisconfigured(ProviderError):
    """The key provider is not set up as configured (e.g. no transit engine at the mount): fix the setup."""

    exit_code = 1


class CiphertextError(KeyMgmtError):
    """A protected value failed to parse or authenticate (tampered, moved to another row/column)."""

    exit_code = 3


class DecryptRefused(KeyMgmtError):
    """No plaintext: the decision token or the provenance record did not allow it. ``reason`` is a code."""

    exit_code = 2

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"decrypt refused: {reason}" + (f" ({detail})" if detail else ""))


class RetireRefused(KeyMgmtError):
    """Raising the minimum decryption version would strand data still depending on older versions."""

    exit_code = 2


class TableJobError(KeyMgmtError):
    """An encrypt-table / reencrypt / verify job cannot proceed (bad table, column, state)."""
