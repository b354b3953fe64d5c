"""Device authentication by mutual TLS at the bureau's proxy, end to end with real HAProxy (issue #13).

HAProxy (Debian's) terminates TLS, requires a client certificate from the device CA made here,
strips whatever the client sent in ``X-Client-Cert`` and passes on the certificate it verified
(``%[ssl_c_der,base64]``); ztcp, trusting that proxy, checks the certificate against the same CA
again and takes the device from it. A device without a certificate, or with one from another CA,
never reaches ztcp; a client's own ``X-Client-Cert`` is replaced, never believed.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import contracts
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("insured_persons", ROOT / "tests" / "helpers" / "insured_persons.py")
insured = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(insured)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CASE = "C-MTLS-1"

pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="HAProxy is not installed (make test installs it)")


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


def _leaf(ca: tuple, cn: str, usage: x509.ObjectIdentifier, dns: str | None = None
          ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca[1].subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return key, builder.sign(ca[0], hashes.SHA256())


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    out = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        out += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bureau(tmp_path: Path, ztcp_home: Path):
    device_ca, other_ca, server_ca = _ca("Bureau Device CA"), _ca("Bureau Device CA"), _ca("Bureau Server CA")
    files = {"device-ca.pem": _pem(device_ca[1]), "server-ca.pem": _pem(server_ca[1])}
    srv_key, srv_cert = _leaf(server_ca, "gateway.bureau", ExtendedKeyUsageOID.SERVER_AUTH, dns="localhost")
    files["haproxy.pem"] = _pem(srv_cert, srv_key)
    for name, ca in (("enrolled", device_ca), ("stranger", other_ca)):
        key, cert = _leaf(ca, f"dev-{name}-1", ExtendedKeyUsageOID.CLIENT_AUTH)
        files[f"{name}.crt"], files[f"{name}.key"] = _pem(cert), _pem(cert, key)[len(_pem(cert)):]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).chmod(0o600)

    rt = Runtime(load_settings(engine_timeout_ms=2000, trusted_proxies=["127.0.0.1"],
                               device_ca_file=str(tmp_path / "device-ca.pem")))
    rt.keys.ensure_all()
    rt.device_inventory.register("dev-enrolled-1", managed=True, compliant=True, actor="test")
    insured.write_bureau(ztcp_home, CASE, contracts.citizen_ref(insured.NID_X, rt.keys.blind_index),
                         ["emp-officer"], rt)
    insured.create_encrypted_table(rt, insured.PEOPLE)
    app_port, proxy_port = _free_port(), _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=app_port, log_level="warning",
                                           lifespan="off", proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""
global
    log stderr format raw local0 warning
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bureau
    bind 127.0.0.1:{proxy_port} ssl crt {tmp_path / 'haproxy.pem'} ca-file {tmp_path / 'device-ca.pem'} verify required
    # What the device says about itself is dropped; what the TLS handshake proved is passed on.
    http-request del-header X-Client-Cert
    http-request del-header X-Forwarded-For
    http-request del-header X-Device-Id
    http-request set-header X-Client-Cert %[ssl_c_der,base64]
    http-request set-header X-Network-Zone internal
    http-request set-header X-Geo 25.04,121.56
    option forwardfor
    default_backend ztcp
backend ztcp
    server ztcp 127.0.0.1:{app_port}
""")
    proxy = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        ctx = ssl.create_default_context(cafile=str(tmp_path / "server-ca.pem"))
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                with ctx.wrap_socket(__import__("socket").create_connection(("127.0.0.1", proxy_port)),
                                     server_hostname="localhost"):
                    pass
            except ssl.SSLError:
                ok = True  # it answered TLS (and wanted a client certificate)
            except OSError:
                time.sleep(0.1)
            else:
                ok = True
        assert ok and proxy.poll() is None, proxy.stdout.read().decode() if proxy.poll() is not None else ""
        yield rt, tmp_path, f"https://localhost:{proxy_port}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)
        rt.close()


def _read(rt: Runtime, tmp_path: Path, base: str, device: str | None, extra: dict | None = None) -> httpx.Response:
    token = rt.issuer.issue_subject("emp-officer", ["case_officer"], method="fido2", mfa=True, org_unit="taipei-01")
    ctx = ssl.create_default_context(cafile=str(tmp_path / "server-ca.pem"))
    if device:
        ctx.load_cert_chain(str(tmp_path / f"{device}.crt"), str(tmp_path / f"{device}.key"))
    with httpx.Client(verify=ctx, timeout=15) as client:
        return client.get(f"{base}/v1/records/{insured.DATASET}/1",
                          params={"fields": "name", "purpose": "benefit_review", "case_id": CASE},
                          headers={"Authorization": f"Bearer {token}", **(extra or {})})


def _last_device(rt: Runtime) -> dict:
    rt.decision_log.flush()
    return rt.decision_log.entries(last=1)[0]["input"]["device"]


def test_the_device_is_the_one_its_certificate_proves(bureau) -> None:  # noqa: ANN001
    rt, tmp, base = bureau
    r = _read(rt, tmp, base, "enrolled")
    assert r.status_code == 200, r.text
    device = _last_device(rt)
    assert device["id"] == "dev-enrolled-1" and device["managed"] is True  # posture from the inventory
    # A forged X-Client-Cert from the device itself is replaced by the proxy, never believed.
    stranger_pem = (tmp / "stranger.crt").read_text()
    r = _read(rt, tmp, base, "enrolled", {"X-Client-Cert": stranger_pem.replace("\n", ""), "X-Device-Id": "x"})
    assert r.status_code == 200 and _last_device(rt)["id"] == "dev-enrolled-1"


def test_no_certificate_or_another_cas_never_reaches_ztcp(bureau) -> None:  # noqa: ANN001
    rt, tmp, base = bureau
    rt.decision_log.flush()
    before = len(rt.decision_log.entries(last=100_000))
    for device in (None, "stranger"):
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            _read(rt, tmp, base, device)
    rt.decision_log.flush()
    assert len(rt.decision_log.entries(last=100_000)) == before  # refused at the handshake
