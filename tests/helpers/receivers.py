"""Real receivers for the delivery tests: Debian's rsyslogd, aiosmtpd, a small HTTP server.

Each runs on loopback, on ports the test picks, with its files in the test's temp directory. The
PKI (a CA and a server certificate for 127.0.0.1 and localhost) is made here, per test.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RSYSLOGD = "/usr/sbin/rsyslogd"
GTLS_MODULE = next((p for p in (Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"),
                                Path("/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so"),
                                Path("/usr/lib/rsyslog/lmnsd_gtls.so")) if p.exists()), None)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- PKI ---------------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that did not sign the server's certificate


def make_pki(dir_: Path) -> Pki:
    dir_.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca("delivery-test-ca")
    _, other = ca("someone-else")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = Pki(dir_ / "ca.crt", dir_ / "server.crt", dir_ / "server.key", dir_ / "other-ca.crt")
    paths.ca.write_bytes(ca_cert.public_bytes(pem))
    paths.other_ca.write_bytes(other.public_bytes(pem))
    paths.cert.write_bytes(leaf.public_bytes(pem))
    fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return paths


# ---- rsyslog -------------------------------------------------------------------------------------------


class Rsyslog:
    """rsyslogd in the foreground, receiving on loopback (plain TCP, UDP and, with ``pki``, TLS
    through its gtls driver), writing each message's raw text as one line of ``out.log``."""

    def __init__(self, dir_: Path, pki: Pki | None = None) -> None:
        self.dir = dir_
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out = dir_ / "out.log"
        self.tcp_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tls_port = free_port() if pki is not None else None
        self.pki = pki
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        lines = [f'global(workDirectory="{self.dir}" maxMessageSize="64k")']
        if self.pki is not None:
            lines.append(f'global(DefaultNetstreamDriverCAFile="{self.pki.ca}" '
                         f'DefaultNetstreamDriverCertFile="{self.pki.cert}" '
                         f'DefaultNetstreamDriverKeyFile="{self.pki.key}")')
        lines += [
            'module(load="imudp")',
            f'input(type="imudp" address="127.0.0.1" port="{self.udp_port}")',
            'module(load="imptcp")',  # plain TCP through imptcp: octet-counted framing is on by default
            f'input(type="imptcp" address="127.0.0.1" port="{self.tcp_port}")',
        ]
        if self.pki is not None:
            lines += [
                'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")',
                f'input(type="imtcp" address="127.0.0.1" port="{self.tls_port}")',
            ]
        lines += [
            'template(name="raw" type="string" string="%rawmsg%\\n")',
            f'*.* action(type="omfile" file="{self.out}" template="raw" flushOnTXEnd="on" asyncWriting="off")',
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> Rsyslog:
        conf = self.dir / "rsyslog.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.dir / "rsyslog.pid")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ports = [self.tcp_port] + ([self.tls_port] if self.tls_port else [])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("rsyslogd exited: " + (self.proc.stdout.read() or b"").decode(errors="replace"))
            if all(_listening(p) for p in ports):
                time.sleep(0.2)  # UDP has no handshake to wait for; give imudp its moment too
                return self
            time.sleep(0.1)
        raise RuntimeError("rsyslogd did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def lines(self) -> list[str]:
        return self.out.read_text(encoding="utf-8", errors="replace").splitlines() if self.out.exists() else []

    def wait_for(self, n: int, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.lines()
            if len(got) >= n:
                return got
            time.sleep(0.05)
        return self.lines()

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def rsyslog_available() -> bool:
    return Path(RSYSLOGD).exists() and shutil.which(RSYSLOGD) is not None


# ---- SMTP ----------------------------------------------------------------------------------------------


@dataclass
class Smtp:
    """aiosmtpd on loopback; STARTTLS offered when ``pki`` is given; AUTH (only over TLS) when
    ``user`` is given. Received messages are kept as ``(envelope_from, rcpt_tos, bytes, tls)``."""

    pki: Pki | None = None
    user: str | None = None
    password: str | None = None
    port: int = field(default_factory=free_port)
    messages: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)
    fail_with: int | None = None  # answer DATA with this code (e.g. 451 or 554)

    def start(self) -> Smtp:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
                if outer.fail_with is not None:
                    return f"{outer.fail_with} not now" if outer.fail_with < 500 else f"{outer.fail_with} rejected"
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                                       session.ssl is not None))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == outer.user \
                and auth_data.password.decode() == outer.password
            return AuthResult(success=ok)

        kwargs: dict = {}
        if self.pki is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.pki.cert, self.pki.key)
            kwargs["tls_context"] = ctx
        if self.user is not None:
            kwargs.update(authenticator=authenticator, auth_require_tls=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, list[str], bytes, bool]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages) < n:
            time.sleep(0.05)
        return self.messages

    def __enter__(self) -> Smtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- webhooks ------------------------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    """A small HTTP server recording each POST (headers, body); answers ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def start(self) -> WebhookReceiver:
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ztcp"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
