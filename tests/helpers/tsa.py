"""A real RFC 3161 Time-Stamp Authority for the tests: OpenSSL's ``openssl ts -reply`` behind a small
HTTP handler, with a CA and a TSA certificate made here (critical EKU ``timeStamping``).

The replies carry only the signer's certificate (no ``certs`` option in the TSA section):
``rfc3161-client`` refuses replies whose certificate SET is not DER-sorted, which OpenSSL produces
when it adds a chain. The verifying side uses the library, never OpenSSL.

Load it by path (pytest runs with ``--import-mode=importlib``)::

    tsa = load_helper("tsa").TestTsa(tmp_path)
    with tsa:  # serving on tsa.url
        ...
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ztcp tests")])


def make_tsa_certificates(directory: Path, *, cn: str = "ztcp test TSA") -> tuple[Path, Path, Path]:
    """(CA certificate PEM, TSA certificate PEM, TSA key PEM) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(cn + " root")).issuer_name(_name(cn + " root"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
           .public_key(tsa_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                        data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                        crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
           .sign(ca_key, hashes.SHA256()))
    ca_pem, tsa_pem, key_pem = directory / "tsa-ca.pem", directory / "tsa.pem", directory / "tsa.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tsa_pem.write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(tsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    key_pem.chmod(0o600)
    return ca_pem, tsa_pem, key_pem


_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1
other_policies = 1.3.6.1.4.1.55555.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class TestTsa:
    """An OpenSSL TSA on 127.0.0.1. ``down = True`` makes it answer 503 (an outage)."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.ca_file, self.cert_file, self.key_file = make_tsa_certificates(self.dir)
        (self.dir / "serial").write_text("01\n")
        self.config = self.dir / "openssl-tsa.cnf"
        self.config.write_text(_CONFIG.format(dir=self.dir))
        self.down = False
        self.requests = 0
        self._lock = threading.Lock()
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if tsa.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    reply = tsa.reply(body)
                except subprocess.CalledProcessError:
                    self.send_response(400)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsa"
        self._thread: threading.Thread | None = None

    def reply(self, query: bytes) -> bytes:
        with self._lock, tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            q.write_bytes(query)
            subprocess.run(["openssl", "ts", "-reply", "-config", str(self.config), "-queryfile", str(q),
                            "-out", str(r)], check=True, capture_output=True)
            self.requests += 1
            return r.read_bytes()

    def start(self) -> TestTsa:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> TestTsa:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
