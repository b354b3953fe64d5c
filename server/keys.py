"""The key provider this installation uses: Vault/OpenBao transit when configured, else the sealed keyring."""

from __future__ import annotations

import keymgmt
from server.settings import Settings


def build_provider(settings: Settings) -> keymgmt.KeyProvider:
    """Vault/OpenBao when ``vault_addr`` is set, else the local keyring (the composition root's job)."""
    if settings.vault_addr:
        return build_vault_provider(settings, settings.vault_addr)
    from server.bootstrap import open_keyring

    return open_keyring(settings)  # this home's sealed keyring, or the cluster's (ZTCP_DATABASE_URL)


def build_vault_provider(settings: Settings, vault_addr: str) -> keymgmt.VaultProvider:
    """Vault/OpenBao transit at ``vault_addr`` (``settings.vault_addr``), with the settings' credentials."""
    cacert = getattr(settings, "vault_cacert", None)
    skip = getattr(settings, "vault_skip_verify", False)
    client_cert = getattr(settings, "vault_client_cert", None)
    client_key = getattr(settings, "vault_client_key", None)
    return keymgmt.VaultProvider(
        vault_addr,
        token=settings.vault_token.get_secret_value() if settings.vault_token else None,
        role_id=settings.vault_role_id,
        secret_id=settings.vault_secret_id.get_secret_value() if settings.vault_secret_id else None,
        namespace=settings.vault_namespace,
        mount=settings.vault_mount,
        verify=False if skip else (str(cacert) if cacert else True),
        client_cert=(str(client_cert), str(client_key)) if client_cert and client_key else None,
    )
