"""Delivery as this installation runs it: channels from the settings, the outbox in
``ZTCP_HOME/delivery.db``, decisions from the decision log, its own thread (never a request's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.errors import ConfigError
from server.settings import Settings
from siem_rules.delivery import (
    DecisionFeed,
    Delivery,
    DeliveryConfig,
    DeliveryThread,
    EmailChannel,
    SyslogTarget,
    WebhookChannel,
    channel_status,
    connect_outbox,
)

DB_NAME = "delivery.db"


def _recipients(text: str | None) -> list[str]:
    return [r.strip() for r in (text or "").split(",") if r.strip()]


def console_url(settings: Settings) -> str:
    base = settings.public_url or f"{settings.scheme}://{settings.host}:{settings.port}"
    return base.rstrip("/") + "/console"


def delivery_config(settings: Settings) -> DeliveryConfig | None:
    """The configured channels, or None when nothing is to be delivered. A bad URL is a ConfigError
    naming the setting (never its value: a webhook URL may hold a token)."""
    def build(name: str, make: Any) -> Any:
        try:
            return make()
        except ValueError as exc:
            raise ConfigError(f"ZTCP_{name}: {exc}") from None

    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    sender = settings.alert_email_from

    def email(to: str | None) -> EmailChannel | None:
        if not settings.smtp_url or not _recipients(to):
            return None
        return build("SMTP_URL", lambda: EmailChannel(settings.smtp_url or "", _recipients(to), sender, password,
                                                      settings.smtp_ca_file, settings.smtp_require_tls))

    syslog = build("SYSLOG_URL", lambda: SyslogTarget(settings.syslog_url, settings.syslog_ca_file)) \
        if settings.syslog_url else None
    webhook = None
    if settings.alert_webhook_url and settings.alert_webhook_secret:
        secret = settings.alert_webhook_secret.get_secret_value().encode()
        webhook = build("ALERT_WEBHOOK_URL", lambda: WebhookChannel(settings.alert_webhook_url or "", secret,
                                                                    settings.alert_webhook_ca_file))
    cfg = build("SYSLOG_FACILITY", lambda: DeliveryConfig(
        console_url=console_url(settings), syslog=syslog, syslog_format=settings.syslog_format,
        syslog_facility=settings.syslog_facility, syslog_decisions=settings.syslog_decisions,
        email=email(settings.alert_email_to), webhook=webhook, escalation=email(settings.alert_escalate_to),
        escalate_after=float(settings.alert_escalate_after_seconds), min_level=settings.alert_min_level))
    from siem_rules.delivery.formats import FACILITIES

    if settings.syslog_facility not in FACILITIES:
        raise ConfigError(f"ZTCP_SYSLOG_FACILITY: one of {', '.join(FACILITIES)}")
    return cfg if cfg.configured else None


def decision_feed(settings: Settings) -> DecisionFeed | None:
    from pdp.decision_log import DecisionLog

    path = settings.ensure_home() / "decisions.db"
    if not settings.database_url and not path.exists():
        return None
    # With replicas, the decision log every replica writes (this home has no decisions.db then).
    reader = DecisionLog.reader(settings.database_url or path)
    return DecisionFeed(events_after=lambda cur, n: reader.events_after(cur, n), last=reader.last_seq,
                        pending=reader.count_after)


def make_delivery(settings: Settings, config: DeliveryConfig | None = None, **kwargs: Any) -> Delivery | None:
    cfg = config or delivery_config(settings)
    if cfg is None:
        return None
    home = settings.ensure_home()
    from server.siem import open_alerts

    return Delivery(connect_outbox(home / DB_NAME), open_alerts(settings), cfg, decision_feed(settings), **kwargs)


def make_delivery_thread(settings: Settings, interval: float = 10.0, gate: Any = None) -> DeliveryThread | None:
    """For `ztcp serve`: None when no channel is configured; else a thread to ``start()``/``stop()``.
    ``gate``: the leader lease's ``held`` (only the cluster's leader delivers)."""
    cfg = delivery_config(settings)  # bad settings stop serve here, before anything starts
    if cfg is None:
        return None
    thread = DeliveryThread(lambda: make_delivery(settings, cfg), interval, gate=gate)  # type: ignore[arg-type,return-value]
    thread.config = cfg  # type: ignore[attr-defined]
    return thread


def delivery_status(settings: Settings, thread: DeliveryThread | None) -> dict[str, Any]:
    """``/readyz``: per channel backlog and last error; degraded (ok false), never required."""
    cfg = getattr(thread, "config", None) or delivery_config(settings)
    if cfg is None:
        return {"ok": True, "required": False, "channels": {}}
    path: Path = settings.ensure_home() / DB_NAME
    conn = connect_outbox(path)
    try:
        channels = channel_status(conn, cfg, decision_feed(settings))
    finally:
        conn.close()
    running = thread is None or thread.running
    error = thread.last_error if thread is not None else None
    return {"ok": running and error is None and all(c["ok"] and not c["failed"] for c in channels.values()),
            "required": False, "running": running, "error": error, "channels": channels}
