"""Process-wide configuration: environment `ZTCP_*`, then an optional `ztcp.toml`, then defaults.

Packages never read the environment themselves; the composition root (``cli``) builds their
configuration from these settings and passes it in, so each package stays testable on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ZTCP_",
        toml_file=os.environ.get("ZTCP_CONFIG", "ztcp.toml"),
        extra="ignore",
    )

    home: Path = Field(default=Path(".ztcp"), description="data directory, created with mode 0700")
    host: str = "127.0.0.1"
    port: int = 8080
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-For is believed (none by default: "
                    "the client IP is the connection's)")

    # Identity: the embedded development issuer unless an external IdP is configured.
    idp_issuer: str | None = Field(default=None, description="external OIDC issuer URL (discovery)")
    idp_audience: str = "ztcp"
    dev_issuer: str = "https://ztcp.local/dev-idp"
    token_leeway_seconds: int = 30

    # Decisions.
    decision_ttl_seconds: int = 60
    engine_timeout_ms: int = 50
    engine: str = Field(default="regorus", description="embedded Rego engine: regorus | regopy")
    policy_dir: Path | None = Field(default=None, description="policy pack directory (default: bundled)")
    timezone: str = "Asia/Taipei"

    # Backends, chosen by URL.
    opa_url: str | None = None
    es_url: str | None = None
    es_api_key: SecretStr | None = None
    vault_addr: str | None = None
    vault_token: SecretStr | None = None
    vault_role_id: str | None = None
    vault_secret_id: SecretStr | None = None
    vault_namespace: str | None = None
    vault_mount: str = "transit"
    vault_cacert: Path | None = Field(default=None, description="CA bundle for Vault's TLS certificate")
    vault_client_cert: Path | None = Field(default=None, description="client certificate (mTLS)")
    vault_client_key: Path | None = Field(default=None, description="client key (mTLS)")
    vault_skip_verify: bool = Field(default=False, description="never in production: skips TLS checks")
    protected_db: str | None = None
    master_key: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls), file_secret_settings)

    def ensure_home(self) -> Path:
        """Create ``home`` (0700) if needed and refuse one that others can read."""
        home = self.home.expanduser().resolve()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = home.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(home, 0o700)
        return home

    @property
    def protected_db_url(self) -> str:
        return self.protected_db or f"sqlite:///{self.ensure_home() / 'protected.db'}"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
