"""The Vault/OpenBao transit provider against a real OpenBao dev server."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import hvac
import pytest

import keymgmt
from keymgmt import ProviderError, ProviderUnavailable, VaultProvider


def _provider(bao, mount: str, **kw) -> VaultProvider:
    return VaultProvider(bao.addr, token=bao.token, mount=mount, **kw)


def test_key_lifecycle(bao_server, transit_mount) -> None:
    p = _provider(bao_server, transit_mount)
    info = p.create("kek", "aes256-gcm96")
    assert (info.latest_version, info.min_decryption_version, info.provider) == (1, 1, "vault")
    with pytest.raises(keymgmt.KeyExists):
        p.create("kek", "aes256-gcm96")
    assert p.ensure("kek", "aes256-gcm96").latest_version == 1
    with pytest.raises(keymgmt.KeyTypeMismatch):
        p.ensure("kek", "hmac")
    with pytest.raises(keymgmt.KeyNotFound):
        p.info("missing")
    assert p.rotate("kek") == 2
    assert p.info("kek").rotated_at is not None
    p.ensure("bi", "hmac")
    p.ensure("sig", "ed25519")
    assert [k.name for k in p.list()] == ["bi", "kek", "sig"]


def test_datakey_wrap_rewrap_min_decryption(bao_server, transit_mount) -> None:
    p = _provider(bao_server, transit_mount)
    p.create("kek", "aes256-gcm96")
    dek, wrapped = p.generate_datakey("kek")
    assert len(dek) == 32 and wrapped.startswith("vault:v1:") and p.wrapped_version(wrapped) == 1
    assert p.unwrap("kek", wrapped) == dek
    p.rotate("kek")
    (re_w,) = p.rewrap_many("kek", [wrapped])
    assert re_w.startswith("vault:v2:") and p.unwrap("kek", re_w) == dek
    p.set_min_decryption_version("kek", 2)
    with pytest.raises(keymgmt.KeyVersionUnavailable):
        p.unwrap("kek", wrapped)
    with pytest.raises(keymgmt.KeyMgmtError, match="between 1 and 2"):
        p.set_min_decryption_version("kek", 3)
    bad = re_w[:-6] + ("AAAAAA" if not re_w.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(keymgmt.CiphertextError):
        p.unwrap("kek", bad)
    with pytest.raises(keymgmt.CiphertextError):
        p.unwrap("kek", "ztcp:v1:abc")


def test_batches_are_chunked_under_the_server_string_limit(bao_server, transit_mount) -> None:
    p = _provider(bao_server, transit_mount)
    p.create("kek", "aes256-gcm96")
    items = [os.urandom(32) for _ in range(1300)]
    # The server really refuses one batch this big (max_request_json_strings = 1000 by default)...
    client = bao_server.client()
    with pytest.raises(hvac.exceptions.VaultError):
        client.secrets.transit.encrypt_data(
            "kek", batch_input=[{"plaintext": "AAAA"} for _ in range(600)], mount_point=transit_mount
        )
    # ...so the provider chunks it.
    wrapped = p.wrap_many("kek", items)
    assert len(wrapped) == 1300
    p.rotate("kek")
    rewrapped = p.rewrap_many("kek", wrapped)
    assert all(w.startswith("vault:v2:") for w in rewrapped)
    assert p.unwrap_many("kek", rewrapped) == items


def test_hmac_and_signing_keys(bao_server, transit_mount) -> None:
    p = _provider(bao_server, transit_mount)
    p.create("bi", "hmac")
    k1 = p.hmac_key("bi")
    assert len(k1) >= 16 and p.hmac_key("bi", 1) == k1
    p.rotate("bi")
    assert p.hmac_key("bi") != k1
    p.create("sig", "ed25519")
    pubs = p.ed25519_public_keys("sig")
    assert list(pubs) == [1]
    version, sig = p.sign_ed25519("sig", b"checkpoint")
    assert version == 1
    pubs[1].verify(sig, b"checkpoint")
    with pytest.raises(keymgmt.KeyTypeMismatch):
        p.hmac_key("sig")


def test_table_end_to_end_on_vault(tmp_path: Path, bao_server, transit_mount, kit) -> None:
    p = _provider(bao_server, transit_mount)
    p.ensure(keymgmt.DEFAULT_KEK, "aes256-gcm96")
    p.ensure(keymgmt.DEFAULT_BLIND_INDEX_KEY, "hmac")
    engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    rows = kit.create_people(engine, 50)
    et = kit.make_table(engine, p, kek_check_interval=0)
    keymgmt.encrypt_table(et, batch=20)
    assert et.find("national_id", rows[5]["national_id"]) == [5]
    p.rotate(keymgmt.DEFAULT_KEK)
    with pytest.raises(keymgmt.RetireRefused):
        keymgmt.retire(p, keymgmt.DEFAULT_KEK, 2, engine)
    assert et.envelope.rewrap() == (1, 1)
    assert keymgmt.reencrypt(et).rows_changed == 50
    keymgmt.retire(p, keymgmt.DEFAULT_KEK, 2, engine)
    et.envelope.clear_cache()
    r = keymgmt.verify_table(et)
    assert (r.ok, r.failed) == (50, 0)
    for pk, want in rows.items():
        assert et._decrypt_row(et.fetch_row(pk), ["national_id"])["national_id"] == want["national_id"]


def test_approle_auth(bao_server, transit_mount) -> None:
    c = bao_server.client()
    if "approle/" not in c.sys.list_auth_methods()["data"]:
        c.sys.enable_auth_method("approle")
    policy = f'path "{transit_mount}/*" {{ capabilities = ["create", "read", "update", "list"] }}'
    c.sys.create_or_update_policy(name=f"ztcp-{transit_mount}", policy=policy)
    c.auth.approle.create_or_update_approle(f"ztcp-{transit_mount}", token_policies=[f"ztcp-{transit_mount}"],
                                            token_ttl="5m")
    role_id = c.auth.approle.read_role_id(f"ztcp-{transit_mount}")["data"]["role_id"]
    secret_id = c.auth.approle.generate_secret_id(f"ztcp-{transit_mount}")["data"]["secret_id"]
    p = VaultProvider(bao_server.addr, role_id=role_id, secret_id=secret_id, mount=transit_mount)
    p.create("kek", "aes256-gcm96")
    dek, w = p.generate_datakey("kek")
    assert p.unwrap("kek", w) == dek
    with pytest.raises(ProviderError, match="AppRole login refused"):
        VaultProvider(bao_server.addr, role_id=role_id, secret_id="wrong", mount=transit_mount)
    # The policy does not cover other mounts: permission denied is a clear refusal, not a crash.
    with pytest.raises(ProviderError, match="permission denied"):
        VaultProvider(bao_server.addr, role_id=role_id, secret_id=secret_id, mount="transit").rotate("x")


def test_needs_credentials() -> None:
    with pytest.raises(keymgmt.KeyMgmtError, match="token or an AppRole"):
        VaultProvider("http://127.0.0.1:1")


def _unseal_key(log: Path) -> str:
    m = re.search(r"Unseal Key: (\S+)", log.read_text())
    assert m, "dev server log has no unseal key"
    return m.group(1)


def _wait_stopped(pid: int) -> None:
    """SIGSTOP is asynchronous: wait until every thread of the server is stopped."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = [Path(t, "stat").read_text().rsplit(")", 1)[1].split()[0]
                  for t in Path(f"/proc/{pid}/task").iterdir()]
        if all(st in ("T", "t") for st in states):
            return
        time.sleep(0.01)
    raise AssertionError("the OpenBao process did not stop")


def test_vault_down_fails_closed_and_recovers(tmp_path: Path, kit, decision_key, ledger_recorder) -> None:
    import pdp

    bao = kit.start_bao(tmp_path)
    try:
        client = bao.client()
        client.sys.enable_secrets_engine("transit", path="transit")
        p = VaultProvider(bao.addr, token=bao.token, retries=2, backoff=0.05, timeout=1.0)
        p.create(keymgmt.DEFAULT_KEK, "aes256-gcm96")
        p.create(keymgmt.DEFAULT_BLIND_INDEX_KEY, "hmac")
        engine = keymgmt.make_engine(f"sqlite:///{tmp_path / 'p.db'}")
        rows = kit.create_people(engine, 5)
        et = kit.make_table(engine, p)
        keymgmt.encrypt_table(et)
        signer = pdp.DecisionTokenSigner(decision_key, "iss", ttl_seconds=60)
        audit = keymgmt.KeyAuditLog(tmp_path / "keyaudit.db")
        reader = keymgmt.ProtectedReader(et, signer.verifier(), ledger_recorder, audit)

        def token() -> str:
            return signer.sign({"jti": str(uuid.uuid4()), "sub": "s", "effect": "permit", "action": "read",
                                "citizen_ref": rows[1]["cref"], "dataset": "insured_persons",
                                "record_id": "1", "fields": ["phone"], "purpose": "p"})[0]

        def read() -> dict:
            return reader.read(token(), 1, ["phone"])

        et.envelope.clear_cache()
        # 1. The server stops answering (frozen process): timeouts, retries, then fail closed.
        os.kill(bao.proc.pid, signal.SIGSTOP)
        try:
            _wait_stopped(bao.proc.pid)
            t0 = time.monotonic()
            with pytest.raises(ProviderUnavailable) as exc:
                read()
            assert "failing closed" in str(exc.value), str(exc.value)
            assert time.monotonic() - t0 < 15
        finally:
            os.kill(bao.proc.pid, signal.SIGCONT)
        assert not [e for e in ledger_recorder.ledger.entries() if e.event.type == "pii.read"]
        assert list(audit.iter_since(0))[-1][1].reason == "key_provider_unavailable"
        assert read() == {"phone": rows[1]["phone"]}  # recovers on its own
        et.envelope.clear_cache()
        # 2. The server is sealed (HTTP 503).
        client.sys.seal()
        with pytest.raises(ProviderUnavailable):
            read()
        client.sys.submit_unseal_key(_unseal_key(bao.log))
        deadline = time.monotonic() + 10
        while client.sys.is_sealed() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert read() == {"phone": rows[1]["phone"]}
    finally:
        bao.stop()
    # 3. Nothing listens any more: connection refused.
    with pytest.raises(ProviderUnavailable, match="unavailable"):
        VaultProvider(bao.addr, token=bao.token, retries=1, backoff=0.01).info("kek")


def test_tls_and_namespace(tmp_path: Path, kit) -> None:
    bao = kit.start_bao(tmp_path, tls=True)
    try:
        root = bao.client()
        root.sys.create_namespace("bureau")
        bao.client(namespace="bureau").sys.enable_secrets_engine("transit", path="transit")
        p = VaultProvider(bao.addr, token=bao.token, namespace="bureau", verify=str(bao.ca))
        p.create("kek", "aes256-gcm96")
        dek, w = p.generate_datakey("kek")
        assert p.unwrap("kek", w) == dek
        # Outside the namespace the key does not exist.
        root.sys.enable_secrets_engine("transit", path="transit")
        assert not VaultProvider(bao.addr, token=bao.token, verify=str(bao.ca)).exists("kek")
        # A server certificate we cannot verify is never trusted: fail closed.
        with pytest.raises(ProviderUnavailable, match="SSLError|failing closed"):
            VaultProvider(bao.addr, token=bao.token, namespace="bureau", retries=0).info("kek")
    finally:
        bao.stop()


def test_rate_limited_calls_are_retried_with_backoff(bao_server, transit_mount) -> None:
    client = bao_server.client()
    name = f"rl-{transit_mount}"
    client.write_data(f"sys/quotas/rate-limit/{name}", data={"rate": 5, "path": f"{transit_mount}/",
                                                              "interval": "1s"})
    try:
        p = _provider(bao_server, transit_mount, retries=8, backoff=0.1)
        p.create("kek", "aes256-gcm96")
        # Bursts well above 5 req/s: the server answers 429 and the provider backs off and retries.
        raw = hvac.Client(url=bao_server.addr, token=bao_server.token)
        hit_429 = False
        for _ in range(20):
            try:
                raw.secrets.transit.read_key("kek", mount_point=transit_mount)
            except hvac.exceptions.RateLimitExceeded:
                hit_429 = True
                break
        assert hit_429, "the quota is not enforced; the test would prove nothing"
        dek = os.urandom(32)
        wrapped = [p.wrap("kek", dek) for _ in range(25)]
        assert all(p.unwrap("kek", w) == dek for w in wrapped[:3])
        impatient = _provider(bao_server, transit_mount, retries=0)
        with pytest.raises(ProviderUnavailable, match="RateLimitExceeded"):
            for _ in range(50):
                impatient.wrap("kek", dek)
    finally:
        client.delete(f"sys/quotas/rate-limit/{name}")
