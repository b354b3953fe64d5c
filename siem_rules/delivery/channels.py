"""The three ways out: syslog (TCP, TLS, UDP), email over SMTP, signed webhooks.

Each channel's ``send`` either returns (delivered) or raises :class:`DeliveryError`, transient (try
again later, with backoff) or permanent (this message will never be accepted: mark it failed and go
on). Error texts name the kind of failure — a status code, an errno — never a URL, address list or
credential: they end up in ``/readyz`` and the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .formats import octet_frame


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or type(exc).__name__})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return (exc.strerror or type(exc).__name__).lower()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# ---- syslog ----------------------------------------------------------------------------------------


@dataclass
class SyslogTarget:
    """``tcp+tls://host:6514`` (RFC 5425), ``tcp://host:514`` (RFC 6587), ``udp://host:514`` (RFC 5426)."""

    url: str
    ca_file: Path | None = None
    timeout: float = 10.0
    scheme: str = field(init=False)
    host: str = field(init=False)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("tcp+tls", "tcp", "udp") or not parts.hostname:
            raise ValueError("syslog URL must be tcp+tls://host:port, tcp://host:port or udp://host:port")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (6514 if parts.scheme == "tcp+tls" else 514)

    @property
    def name(self) -> str:
        return f"syslog ({self.scheme})"

    def send(self, messages: list[bytes]) -> None:
        """Send ``messages`` in order over one connection (one datagram each over UDP).

        Over TCP and TLS the messages count as delivered only when the receiver has read them all:
        after the last one we half-close and wait for the receiver to close its side (it does once it
        has read our end of stream). A receiver that dies mid-batch makes the batch fail, and it is
        sent again (at least once: RFC 5425 has no acknowledgements, so a crash between reading and
        writing can still duplicate — never lose — a message)."""
        if not messages:
            return
        if self.scheme == "udp":
            self._send_udp(messages)
            return
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise DeliveryError(f"cannot connect: {_os_reason(exc)}") from None
        sock: socket.socket = raw
        try:
            if self.scheme == "tcp+tls":
                sock = _tls_context(self.ca_file).wrap_socket(raw, server_hostname=self.host)
            sock.sendall(b"".join(octet_frame(m) for m in messages))
            if isinstance(sock, ssl.SSLSocket):
                # Our close_notify follows the last record: a receiver that answers it, or closes the
                # connection on reading it (rsyslog's gtls does), has read every message before it.
                try:
                    sock.unwrap()
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    pass
                except ssl.SSLError as exc:
                    if exc.reason != "UNEXPECTED_EOF_WHILE_READING":
                        raise
                return
            raw.shutdown(socket.SHUT_WR)  # TCP: half-close, then wait for the receiver's EOF
            while raw.recv(4096):
                pass
        except OSError as exc:
            raise DeliveryError(f"send failed: {_os_reason(exc)}") from None
        finally:
            sock.close()
            raw.close()

    def _send_udp(self, messages: list[bytes]) -> None:
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
            with socket.socket(family, kind, proto) as sock:
                sock.connect(addr)  # a connected socket reports ICMP port-unreachable as ECONNREFUSED
                for m in messages:
                    sock.send(m)
        except OSError as exc:
            raise DeliveryError(f"send failed: {_os_reason(exc)}") from None


# ---- email -----------------------------------------------------------------------------------------


@dataclass
class EmailChannel:
    """``smtp://[user@]host[:587]`` (STARTTLS when the server offers it) or ``smtps://…:465``.

    Credentials are never sent in clear: with a user configured and no TLS the message fails
    (permanently: retrying will not make the server offer TLS)."""

    url: str
    recipients: list[str]
    sender: str
    password: str | None = None
    ca_file: Path | None = None
    require_tls: bool = False
    timeout: float = 15.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP URL must be smtp://[user@]host[:port] or smtps://[user@]host[:port]")
        if parts.password:
            raise ValueError("the SMTP password goes in ZTCP_SMTP_PASSWORD, never in the URL")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.user = unquote(parts.username) if parts.username else None
        if not self.recipients:
            raise ValueError("no recipients")

    def send(self, subject: str, body: str, headers: dict[str, str] | None = None) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="ztcp.local")
        for k, v in (headers or {}).items():
            msg[k] = v
        msg.set_content(body)
        ctx = _tls_context(self.ca_file)
        try:
            if self.implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ctx)
                tls = True
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                tls = False
            with smtp:
                smtp.ehlo()
                if not tls and smtp.has_extn("starttls"):
                    smtp.starttls(context=ctx)
                    smtp.ehlo()
                    tls = True
                if not tls and (self.require_tls or self.user):
                    raise DeliveryError("the SMTP server offers no STARTTLS; refusing to send "
                                        + ("credentials" if self.user else "mail") + " in clear", permanent=True)
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(msg)
                if refused:
                    raise DeliveryError(f"{len(refused)} recipient(s) refused", permanent=True)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP authentication failed ({exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"{len(exc.recipients)} recipient(s) refused", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            # 4xx: try again later; 5xx: the server will not take this message.
            raise DeliveryError(f"SMTP {exc.smtp_code}", permanent=exc.smtp_code >= 500) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"SMTP error ({type(exc).__name__})") from None
        except OSError as exc:
            raise DeliveryError(f"SMTP connection: {_os_reason(exc)}") from None


# ---- webhooks --------------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Ztcp-Signature"
TIMESTAMP_HEADER = "X-Ztcp-Timestamp"
DELIVERY_HEADER = "X-Ztcp-Delivery"


def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256(secret, "<timestamp>." + body): the timestamp is signed too, so a
    captured request cannot be replayed later with a fresh timestamp."""
    mac = hmac.new(secret, str(int(timestamp)).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return "v1=" + mac


def verify_webhook(secret: bytes, body: bytes, timestamp: str | None, signature: str | None, *,
                   tolerance: float = 300.0, now: float | None = None) -> bool:
    """For receivers: is this request from us, unaltered and fresh? Constant-time comparison of
    every ``v1=`` signature in the header (several while a secret is being rotated), and a
    timestamp within ``tolerance`` seconds of now."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = sign_webhook(secret, int(timestamp), body)
    ok = False
    for candidate in signature.split(","):
        ok |= hmac.compare_digest(candidate.strip().encode(), expected.encode())
    return ok


@dataclass
class WebhookChannel:
    url: str
    secret: bytes
    ca_file: Path | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("webhook URL must be https://… (or http:// on a trusted network)")
        if not self.secret:
            raise ValueError("webhooks are signed: ZTCP_ALERT_WEBHOOK_SECRET is required")

    def send(self, payload: dict[str, Any], delivery_id: str, now: float | None = None) -> None:
        import httpx

        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        ts = int(time.time() if now is None else now)
        headers = {"content-type": "application/json", TIMESTAMP_HEADER: str(ts), DELIVERY_HEADER: delivery_id,
                   SIGNATURE_HEADER: sign_webhook(self.secret, ts, body), "user-agent": "ztcp-alerts/0.1"}
        verify: Any = str(self.ca_file) if self.ca_file else True
        try:
            r = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout, verify=verify,
                           follow_redirects=False)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}") from None
        if 200 <= r.status_code < 300:
            return
        transient = r.status_code in (408, 425, 429) or r.status_code >= 500
        raise DeliveryError(f"webhook answered HTTP {r.status_code}", permanent=not transient)
