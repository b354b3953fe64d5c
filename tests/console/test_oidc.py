"""OIDC authorization code + PKCE against a small but real OpenID provider over HTTP.

The provider (below) implements discovery, JWKS, the authorization endpoint (it signs in a test
user without asking) and the token endpoint with S256 PKCE verification; tokens are Ed25519 JWTs
made with joserfc. The console talks to it with authlib exactly as it would to the bureau's IdP.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import OKPKey


class Provider:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.key = OKPKey.import_key(Ed25519PrivateKey.generate(), {"kid": "idp-1"})
        self.user = {"sub": "emp-oidc-aud", "roles": ["auditor"], "name": "OIDC Auditor"}
        self.codes: dict[str, dict] = {}
        self.wrong_nonce = False
        self.token_requests: list[dict] = []
        self.offers_logout = False
        self.app = FastAPI()
        app = self.app

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict:
            doc = {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                   "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                   "code_challenge_methods_supported": ["S256"]}
            if self.offers_logout:
                doc["end_session_endpoint"] = f"{self.url}/logout"
            return doc

        @app.get("/jwks")
        def jwks() -> dict:
            return {"keys": [{**self.key.as_dict(private=False), "use": "sig", "alg": "EdDSA"}]}

        @app.get("/authorize")
        def authorize(request: Request) -> RedirectResponse:
            q = request.query_params
            assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"], "client_id": q["client_id"],
                                "redirect_uri": q["redirect_uri"]}
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 303)

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            self.token_requests.append(form)
            grant = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if grant is None or digest != grant["challenge"] or form.get("redirect_uri") != grant["redirect_uri"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            base = {"iss": self.url, "sub": self.user["sub"], "iat": now, "nbf": now, "exp": now + 300}
            access = jwt.encode({"alg": "EdDSA", "kid": "idp-1", "typ": "JWT"},
                                {**base, "aud": "ztcp", "roles": self.user["roles"], "amr": ["hwk", "pwd"],
                                 "auth_time": now, "subject_type": "employee"}, self.key, algorithms=["EdDSA"])
            id_token = jwt.encode({"alg": "EdDSA", "kid": "idp-1"},
                                  {**base, "aud": grant["client_id"], "name": self.user["name"],
                                   "nonce": "not-yours" if self.wrong_nonce else grant["nonce"]},
                                  self.key, algorithms=["EdDSA"])
            return JSONResponse({"access_token": access, "id_token": id_token, "token_type": "Bearer",
                                 "expires_in": 300})


@pytest.fixture
def provider(unused_tcp_port: int):  # noqa: ANN201
    p = Provider(unused_tcp_port)
    server = uvicorn.Server(uvicorn.Config(p.app, host="127.0.0.1", port=unused_tcp_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield p
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def oidc_world(seeded_template, ztcp_home, provider, monkeypatch):  # noqa: ANN001, ANN201
    import shutil

    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.runtime import Runtime
    from server.settings import load_settings

    shutil.copytree(seeded_template[0], ztcp_home)
    monkeypatch.setenv("ZTCP_CONSOLE_MANAGED_DEVICES", "true")
    rt = Runtime(load_settings(engine_timeout_ms=2000, idp_issuer=provider.url))
    app = create_app(rt)
    with TestClient(app, client=("127.0.0.1", 50000), follow_redirects=False) as client:
        yield rt, client, provider
    rt.close()


def _sign_in(client, provider) -> httpx.Response:  # noqa: ANN001
    r = client.get("/console/signin/oidc")
    assert r.status_code == 303
    authorize = r.headers["location"]
    assert authorize.startswith(f"{provider.url}/authorize?")
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ztcp_console_oidc="))
    assert "samesite=lax" in cookie.lower() and "httponly" in cookie.lower()
    back = httpx.get(authorize)  # the browser at the IdP, which sends it back with a code
    assert back.status_code == 303
    callback = urlsplit(back.headers["location"])
    assert callback.path == "/console/oidc/callback"
    return client.get(f"{callback.path}?{callback.query}")


def test_oidc_code_flow_with_pkce_signs_in_with_the_idp_roles(oidc_world) -> None:  # noqa: ANN001
    rt, client, provider = oidc_world
    page = client.get("/console/signin")
    assert "Development sign-in" not in page.text and "Sign in with the identity provider" in page.text
    r = client.get("/console/signin/oidc")
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert q["client_id"] == ["ztcp-console"] and q["nonce"][0] and q["state"][0]
    assert "openid" in q["scope"][0].split()

    r = _sign_in(client, provider)
    assert r.status_code == 200 and 'http-equiv="refresh"' in r.text
    assert any(c.startswith("ztcp_console_session=") for c in r.headers.get_list("set-cookie"))
    verifier = provider.token_requests[-1]["code_verifier"]
    assert 43 <= len(verifier) <= 128  # RFC 7636
    home = client.get("/console/")
    assert "OIDC Auditor" in home.text and "development sign-in" not in home.text
    assert client.get("/console/audit").status_code == 200  # the IdP's roles, checked by the PDP
    assert client.get("/console/policy").status_code == 403


def test_state_mismatch_replay_and_bad_nonce_are_refused(oidc_world) -> None:  # noqa: ANN001
    _, client, provider = oidc_world
    r = client.get("/console/signin/oidc")
    back = httpx.get(r.headers["location"])
    callback = urlsplit(back.headers["location"])
    forged = re.sub(r"state=[^&]+", "state=forged", callback.query)
    r = client.get(f"{callback.path}?{forged}")
    assert r.status_code == 401 and "failed" in r.text
    r = client.get(f"{callback.path}?{callback.query}")  # the login was consumed by the failed attempt
    assert r.status_code == 401
    assert client.get("/console/audit").status_code == 303  # not signed in

    provider.wrong_nonce = True
    r = _sign_in(client, provider)
    assert r.status_code == 401 and client.get("/console/audit").status_code == 303


def test_dev_signin_is_absent_with_an_idp(oidc_world) -> None:  # noqa: ANN001
    _, client, _ = oidc_world
    r = client.post("/console/signin/dev", data={"csrf": "x", "staff": "emp-aud-1"})
    assert r.status_code == 404 and "ztcp_console_session" not in r.headers.get("set-cookie", "")


def test_signing_out_also_ends_the_idp_session_when_it_offers_logout(oidc_world) -> None:  # noqa: ANN001
    """OpenID Connect RP-Initiated Logout: a page (the CSP's form-action forbids a form's redirect
    to another origin) sends the browser to end_session_endpoint with the ID token as hint."""
    _, client, provider = oidc_world
    provider.offers_logout = True
    assert _sign_in(client, provider).status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/").text).group(1)
    r = client.post("/console/signout", data={"csrf": csrf})
    assert r.status_code == 200
    url = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', r.text).group(1).replace("&amp;", "&")
    assert url.startswith(f"{provider.url}/logout?")
    q = parse_qs(urlsplit(url).query)
    assert q["client_id"] == ["ztcp-console"] and q["post_logout_redirect_uri"][0].endswith("/console/signin")
    assert jwt.decode(q["id_token_hint"][0], provider.key, algorithms=["EdDSA"]).claims["sub"] == provider.user["sub"]
    assert client.get("/console/audit").status_code == 303  # the console's own session is gone


def test_without_an_idp_logout_only_the_console_session_ends(oidc_world) -> None:  # noqa: ANN001
    _, client, provider = oidc_world
    assert _sign_in(client, provider).status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/").text).group(1)
    r = client.post("/console/signout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"].endswith("/console/signin")
    assert client.get("/console/audit").status_code == 303
