"""Process-wide configuration: environment `ZTCP_*`, then an optional `ztcp.toml`, then defaults.

Packages never read the environment themselves; the composition root (``cli``) builds their
configuration from these settings and passes it in, so each package stays testable on its own.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from server.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ZTCP_",
        toml_file=os.environ.get("ZTCP_CONFIG", "ztcp.toml"),
        extra="ignore",
    )

    home: Path = Field(default=Path(".ztcp"), description="data directory, created with mode 0700")
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024,
                                description="largest request body accepted (413 before authentication)")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or CIDR ranges of reverse proxies whose X-Forwarded-For and device/context "
                    "headers are believed (none by default: the client IP is the connection's)")
    network_zones: dict[str, list[str]] = Field(
        default_factory=dict,
        description='CIDR ranges per network zone, e.g. {"internal": ["10.0.0.0/8"], "vpn": ["172.16.0.0/12"]}; '
                    "an address in none is internet")
    sites_file: Path | None = Field(default=None, description="site table (JSON): the bureau's offices and "
                                    "their networks, for the client's location")

    # Device authentication: a device certificate (passed on by a trusted proxy), a signed posture
    # assertion from the MDM/EDR service, and the inventory (`ztcp devices`).
    device_ca_file: Path | None = Field(default=None, description="CA that issues the bureau's device certificates")
    device_posture_jwks: str | None = Field(
        default=None, description="JWKS of the MDM/EDR posture service: an https URL or a file path")
    device_posture_issuer: str | None = Field(default=None, description="issuer (iss) of posture assertions")
    device_posture_max_age_seconds: int = Field(default=900, ge=30, le=86400)

    # TLS for `ztcp serve` (files, never argv). A client CA makes it mutual TLS: only systems
    # holding a certificate from that CA can connect at all; callers still present their token.
    tls_cert_file: Path | None = Field(default=None, description="server certificate chain (PEM)")
    tls_key_file: Path | None = Field(default=None, description="server private key (PEM, mode 0600)")
    tls_client_ca_file: Path | None = Field(default=None, description="CA bundle; set = client certificates required")

    # Identity: the embedded development issuer unless an external IdP is configured.
    idp_issuer: str | None = Field(default=None, description="external OIDC issuer URL (discovery)")
    idp_audience: str = "ztcp"
    dev_issuer: str = "https://ztcp.local/dev-idp"
    dev_signin: bool | None = Field(
        default=None, description="development sign-in and `ztcp token issue` (no IdP needed): on only when "
                                  "true, or by default on a loopback bind with no IdP configured")
    token_leeway_seconds: int = 30

    # Decisions.
    decision_ttl_seconds: int = 60
    engine_timeout_ms: int = 50
    engine: str = Field(default="regorus", description="embedded Rego engine: regorus | regopy")
    policy_dir: Path | None = Field(default=None, description="policy pack directory (default: bundled)")
    timezone: str = "Asia/Taipei"

    # Backends, chosen by URL.
    opa_url: str | None = None
    opa_push: bool = Field(default=False, description="upload the pack to ZTCP_OPA_URL (an OPA that does not "
                                                      "poll bundles) instead of letting it pull /v1/bundles/ztcp")
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
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL shared by every replica (postgresql://user@host:port/db): the provenance ledger, "
                    "decision log, signal history and policy revisions live there, so every `ztcp serve` on it "
                    "decides with the same history; unset: SQLite files in ZTCP_HOME (one process). A password "
                    "in it is never printed (PGPASSWORD or ~/.pgpass keep it out of the URL altogether)")

    # Who signs the ledger's checkpoints. "auto": Vault/OpenBao transit when vault_addr is set (the
    # private key never reaches this host), else the sealed local keyring.
    checkpoint_key: Literal["auto", "local", "vault"] = "auto"
    checkpoint_publish_dir: Path | None = Field(
        default=None, description="copy every new signed checkpoint here (storage the ledger's host cannot rewrite)")
    witnesses: list[dict[str, str]] = Field(
        default_factory=list,
        description='witnesses that cosign every checkpoint: [{"url": "https://witness.example", "key": '
                    '"<name>+<id>+<base64>"}] (ztcp witness key prints the key)')
    checkpoint_unsigned_max_age_seconds: int = Field(
        default=180, ge=10, description="audit verify fails when events stay unsigned longer than this after the "
                                        "latest checkpoint (checkpoints are made every minute while serving)")
    checkpoint_sealing_key: SecretStr | None = Field(
        default=None, description="base64 32-byte key sealing the local checkpoint key apart from master.key "
                                  "(give it from the service's secrets, never store it in the home)")
    checkpoint_trust_local: bool = Field(
        default=False,
        description="with a Vault checkpoint key, still accept checkpoints signed by the local key "
                    "(only for a ledger that was signed locally before moving to Vault)")

    # Trusted time (RFC 3161) and government data exchange (exchange/).
    tsa_url: str | None = Field(default=None, description="Time-Stamp Authority (RFC 3161 over HTTP): every checkpoint "
                                                          "and every transfer record is time-stamped")
    tsa_ca_file: Path | None = Field(default=None, description="the TSA's trust anchor (PEM): verifies its tokens")
    exchange_tsa_unavailable: Literal["refuse", "later"] = Field(
        default="later", description="TSA unreachable when a transfer starts or ends: refuse it, or send and "
                                     "time-stamp later (`ztcp exchange verify` shows the gap)")
    exchange_receipt_hours: float = Field(default=24.0, gt=0, le=8760,
                                          description="a transfer without the agency's receipt this long is overdue")
    exchange_chunk: int = Field(default=2000, ge=10, le=100_000,
                                description="records per sealed segment and per ledger transaction in a batch")
    exchange_device_id: str = Field(default="ztcp-exchange-host", description="this host's device id in the inventory "
                                                                             "(`ztcp devices register`) for batches "
                                                                             "started at the command line")
    # Delivery to the SOC and on-call people (siem_rules.delivery; secrets from the environment only).
    public_url: str | None = Field(default=None, description="this server's URL as people reach it, for console "
                                   "links in notifications (default: http(s)://host:port)")
    syslog_url: str | None = Field(default=None, description="SOC syslog receiver: tcp+tls://host:6514, "
                                   "tcp://host:514 or udp://host:514 (RFC 5424; octet counting on TCP)")
    syslog_ca_file: Path | None = Field(default=None, description="CA bundle for the syslog receiver's TLS")
    syslog_format: Literal["ecs", "cef"] = Field(default="ecs", description="message payload: ECS JSON or CEF")
    syslog_facility: str = Field(default="local0", description="syslog facility (local0–local7, auth, authpriv…)")
    syslog_decisions: bool = Field(default=False, description="forward every decision too, from when it is "
                                   "turned on (alerts are always forwarded)")
    smtp_url: str | None = Field(default=None, description="smtp://[user@]host[:587] (STARTTLS when offered) "
                                 "or smtps://[user@]host[:465]")
    smtp_password: SecretStr | None = None
    smtp_ca_file: Path | None = Field(default=None, description="CA bundle for the SMTP server's TLS")
    smtp_require_tls: bool = Field(default=False, description="refuse to send mail without TLS (always so "
                                   "when a user is set)")
    alert_email_to: str | None = Field(default=None, description="alert email recipients, comma-separated")
    alert_email_from: str = Field(default="ztcp-alerts@localhost", description="sender of alert email")
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    alert_webhook_ca_file: Path | None = None
    alert_min_level: Literal["informational", "low", "medium", "high", "critical"] = Field(
        default="high", description="email and webhooks notify alerts at least this severe (syslog gets all)")
    alert_escalate_to: str | None = Field(default=None, description="recipients of the second notification "
                                          "for a critical alert left unacknowledged, comma-separated")
    alert_escalate_after_seconds: int = Field(default=1800, ge=1)

    # Retention, per store, in days (0: keep forever), applied by the scheduler on the leader and
    # by `ztcp logs retention --apply`. Legal holds (`ztcp logs hold`) exempt what they protect.
    # The provenance ledger is never deleted: old ranges are archived (`ztcp logs archive`).
    retention_decisions_days: int = Field(default=1825, ge=0, description="decision log (5 years)")
    retention_siem_events_days: int = Field(default=400, ge=0, description="SIEM event store (copies of the logs)")
    retention_alerts_days: int = Field(default=1825, ge=0, description="closed alerts and their history")
    retention_key_audit_days: int = Field(default=2555, ge=0, description="key audit log (7 years)")
    retention_console_sessions_days: int = Field(default=30, ge=0, description="console sessions (PostgreSQL)")
    archive_dir: Path | None = Field(default=None, description="where `ztcp logs archive` writes sealed ledger "
                                     "segments (default ZTCP_HOME/archive; mount offline storage here)")
    retention_interval_hours: float = Field(default=24.0, gt=0, description="how often the scheduler applies it")

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        # The message never repeats the value: a URL may carry a password.
        if value is not None and not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError("must be a postgresql:// URL")
        if value and value.startswith("postgresql+psycopg://"):  # SQLAlchemy's spelling, as ZTCP_PROTECTED_DB takes
            value = "postgresql://" + value.removeprefix("postgresql+psycopg://")
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.checkpoint_key == "vault" and not self.vault_addr:
            raise ValueError("ZTCP_CHECKPOINT_KEY=vault needs ZTCP_VAULT_ADDR")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("ZTCP_TLS_CERT_FILE and ZTCP_TLS_KEY_FILE go together")
        if self.dev_signin and self.idp_issuer:
            raise ValueError("ZTCP_DEV_SIGNIN=true and ZTCP_IDP_ISSUER exclude each other")
        if bool(self.device_posture_jwks) != bool(self.device_posture_issuer):
            raise ValueError("ZTCP_DEVICE_POSTURE_JWKS and ZTCP_DEVICE_POSTURE_ISSUER go together")
        if self.tsa_url and not self.tsa_ca_file:
            raise ValueError("ZTCP_TSA_URL needs ZTCP_TSA_CA_FILE (the TSA's trust anchor)")
        if self.smtp_url and not self.alert_email_to:
            raise ValueError("ZTCP_SMTP_URL needs ZTCP_ALERT_EMAIL_TO (recipients)")
        if (self.alert_email_to or self.alert_escalate_to) and not self.smtp_url:
            raise ValueError("ZTCP_ALERT_EMAIL_TO and ZTCP_ALERT_ESCALATE_TO need ZTCP_SMTP_URL")
        if bool(self.alert_webhook_url) != bool(self.alert_webhook_secret):
            raise ValueError("ZTCP_ALERT_WEBHOOK_URL and ZTCP_ALERT_WEBHOOK_SECRET go together (webhooks are signed)")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("ZTCP_TLS_CLIENT_CA_FILE (mutual TLS) needs ZTCP_TLS_CERT_FILE and ZTCP_TLS_KEY_FILE")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_file else "http"

    @property
    def loopback(self) -> bool:
        """Is ``host`` a loopback address (or ``localhost``)? Only then is development sign-in on by default."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def dev_signin_enabled(self) -> bool:
        """Development sign-in: anyone who reaches it can act as anyone in the staff directory, so it
        is never on with an IdP, and on other than loopback only when asked for explicitly."""
        if self.idp_issuer:
            return False
        return self.dev_signin if self.dev_signin is not None else self.loopback

    @property
    def publish_dir(self) -> Path:
        """Where signed checkpoints are published: ZTCP_CHECKPOINT_PUBLISH_DIR, by default
        ZTCP_HOME/published (copy it off the host, or better, run witnesses)."""
        return self.checkpoint_publish_dir or self.ensure_home() / "published"

    @property
    def witnessed_dir(self) -> Path:
        """Where the witnesses' cosignatures are kept (ZTCP_HOME/witnessed)."""
        return self.ensure_home() / "witnessed"

    @property
    def timestamps_dir(self) -> Path:
        """Where checkpoint time-stamp tokens are kept (ZTCP_HOME/timestamps)."""
        return self.ensure_home() / "timestamps"

    @property
    def checkpoint_in_vault(self) -> bool:
        return self.checkpoint_key == "vault" or (self.checkpoint_key == "auto" and bool(self.vault_addr))

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
    """The settings, or one clear line naming the variable at fault (never its value: it may be a secret)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # any field by name; the model validates each
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"ZTCP_{str(err['loc'][0]).upper()}: {msg}" if err["loc"] else msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
