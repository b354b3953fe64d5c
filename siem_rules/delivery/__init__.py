"""Delivery of alerts (and, when configured, decisions) to the bureau's SOC and on-call people.

Syslog RFC 5424 (TCP with octet counting, TLS, UDP) carrying CEF or ECS JSON; email over SMTP with
STARTTLS; webhooks signed with HMAC-SHA256. A durable, cursor-based backlog in its own SQLite file,
de-duplication per status change and channel, retry with backoff, and escalation of critical
alerts left unacknowledged. See siem_rules/README.md, "Delivery".
"""

from .channels import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryError,
    EmailChannel,
    SyslogTarget,
    WebhookChannel,
    sign_webhook,
    verify_webhook,
)
from .formats import alert_message, cef_alert, cef_decision, decision_message, ecs_alert, ecs_decision, octet_frame
from .outbox import (
    CHANNELS,
    DecisionFeed,
    Delivery,
    DeliveryConfig,
    DeliveryThread,
    channel_status,
    connect_outbox,
    email_text,
)

__all__ = [
    "CHANNELS",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DecisionFeed",
    "Delivery",
    "DeliveryConfig",
    "DeliveryError",
    "DeliveryThread",
    "EmailChannel",
    "SyslogTarget",
    "WebhookChannel",
    "alert_message",
    "cef_alert",
    "cef_decision",
    "channel_status",
    "connect_outbox",
    "decision_message",
    "ecs_alert",
    "ecs_decision",
    "email_text",
    "octet_frame",
    "sign_webhook",
    "verify_webhook",
]
