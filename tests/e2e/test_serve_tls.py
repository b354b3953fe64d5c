"""`ztcp serve` over TLS and mutual TLS, as a real process with real certificates.

A bureau CA issues the server's certificate and one calling system's; a second, self-made CA plays
a system the bureau never enrolled. With ZTCP_TLS_CLIENT_CA_FILE set, only the enrolled system can
even open a connection (its bearer token is still checked behind that).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca: tuple, cn: str, *, server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def _write(dir_: Path, name: str, key, cert) -> tuple[Path, Path]:  # noqa: ANN001
    crt, pem = dir_ / f"{name}.crt", dir_ / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return crt, pem


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    bureau = _ca("bureau-ca")
    outsider = _ca("someone-else")
    (tmp_path / "ca.crt").write_bytes(bureau[1].public_bytes(serialization.Encoding.PEM))
    server = _write(tmp_path, "server", *_leaf(bureau, "ztcp.bureau.internal", server=True))
    client = _write(tmp_path, "counter-app", *_leaf(bureau, "counter-app", server=False))
    rogue = _write(tmp_path, "rogue", *_leaf(outsider, "counter-app", server=False))
    return {"ca": tmp_path / "ca.crt", "server_crt": server[0], "server_key": server[1],
            "client_crt": client[0], "client_key": client[1], "rogue_crt": rogue[0], "rogue_key": rogue[1]}


def _serve(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _client(pki: dict, cert: str | None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert:
        ctx.load_cert_chain(str(pki[f"{cert}_crt"]), str(pki[f"{cert}_key"]))
    return httpx.Client(verify=ctx, timeout=5)


def test_mutual_tls_admits_only_enrolled_systems(ztcp_home, unused_tcp_port, pki) -> None:
    env = {**os.environ, "ZTCP_HOME": str(ztcp_home), "ZTCP_PORT": str(unused_tcp_port),
           "ZTCP_TLS_CERT_FILE": str(pki["server_crt"]), "ZTCP_TLS_KEY_FILE": str(pki["server_key"]),
           "ZTCP_TLS_CLIENT_CA_FILE": str(pki["ca"])}
    server = _serve(env)
    base = f"https://127.0.0.1:{unused_tcp_port}"
    try:
        with _client(pki, "client") as enrolled:
            deadline, ready = time.time() + 60, None
            while time.time() < deadline:
                try:
                    ready = enrolled.get(f"{base}/readyz")
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            assert ready is not None and ready.status_code == 200
            assert enrolled.post(f"{base}/v1/decisions", json={}).status_code == 401  # the token still counts
            signin = enrolled.get(f"{base}/console/signin")  # served over TLS: cookies are Secure
            cookies = signin.headers.get_list("set-cookie")
            assert signin.status_code == 200 and cookies and all("secure" in c.lower() for c in cookies)
            assert signin.headers["content-security-policy"].startswith("default-src 'none'")
        for who in (None, "rogue"):
            with _client(pki, who) as c, pytest.raises(httpx.HTTPError):
                c.get(f"{base}/healthz")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{unused_tcp_port}/healthz", timeout=5)  # no plaintext side door
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err[-2000:]
    assert f"ztcp serving on {base} (mutual TLS" in out


@pytest.mark.parametrize("change,message", [
    ({"ZTCP_TLS_KEY_FILE": None}, "ZTCP_TLS_CERT_FILE and ZTCP_TLS_KEY_FILE go together"),
    ({"ZTCP_TLS_CERT_FILE": "/nonexistent/server.crt"}, "ZTCP_TLS_CERT_FILE: no such file"),
    ({"ZTCP_TLS_KEY_FILE": "rogue_key"}, "TLS files cannot be used"),  # a key that is not the cert's
    ({"chmod": 0o644}, "readable by others"),
])
def test_bad_tls_settings_stop_serve_with_one_line(ztcp_home, unused_tcp_port, pki, change, message) -> None:
    env = {**os.environ, "ZTCP_HOME": str(ztcp_home), "ZTCP_PORT": str(unused_tcp_port),
           "ZTCP_TLS_CERT_FILE": str(pki["server_crt"]), "ZTCP_TLS_KEY_FILE": str(pki["server_key"])}
    for k, v in change.items():
        if k == "chmod":
            pki["server_key"].chmod(v)
        elif v is None:
            env.pop(k)
        else:
            env[k] = str(pki.get(v, v))
    done = subprocess.run([sys.executable, "-m", "cli.main", "serve"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
