"""The console's own settings (``ZTCP_CONSOLE_*``), read by the composition root only."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZTCP_CONSOLE_", extra="ignore")

    # OIDC client of the console at the external IdP (used only when ZTCP_IDP_ISSUER is set).
    client_id: str = "ztcp-console"
    client_secret: SecretStr | None = Field(default=None, description="confidential client; PKCE is used anyway")
    scopes: str = "openid profile"
    public_url: str | None = Field(default=None, description="external base URL (for the OIDC redirect URI)")

    idle_minutes: int = Field(default=15, ge=1, le=240)
    absolute_hours: int = Field(default=8, ge=1, le=24)
    token_minutes: int = Field(default=10, ge=1, le=60, description="life of a dev sign-in subject token")
    # The console cannot see the browser's device. True only when an access proxy in front of the
    # console admits managed, compliant devices alone: the PDP is then told so. Unset: assumed in
    # development-issuer mode (nothing is really authenticated there either), never with an IdP.
    managed_devices: bool | None = None
    max_sessions: int = Field(default=10_000, ge=10)
