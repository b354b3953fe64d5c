"""An external IdP found by OIDC discovery, served for real on loopback (discovery + JWKS)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.errors import ConfigurationError, SubjectTokenError
from pdp.identity import JwtVerifier, OidcKeySource
from pdp.issuer import DevIssuer


class _Idp:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer_url = f"http://127.0.0.1:{self.server.server_port}"
        self.signer = DevIssuer(Ed25519PrivateKey.generate(), self.issuer_url, "ztcp")
        self.jwks_hits = 0
        self.claimed_issuer = self.issuer_url

    def _handler(self):  # type: ignore[no-untyped-def]
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": idp.claimed_issuer, "jwks_uri": f"{idp.issuer_url}/jwks",
                            "authorization_endpoint": f"{idp.issuer_url}/authorize",
                            "response_types_supported": ["code"], "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["EdDSA", "Ed25519"]}
                elif self.path == "/jwks":
                    idp.jwks_hits += 1
                    body = idp.signer.jwks()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler

    def __enter__(self) -> _Idp:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_tokens_of_a_discovered_idp_verify_and_rotation_is_followed():
    with _Idp() as idp:
        verifier = JwtVerifier(OidcKeySource(idp.issuer_url), idp.issuer_url, "ztcp", refresh_interval=0)
        token = idp.signer.issue_subject("emp-9", ["reviewer"], method="otp", mfa=True)
        assert verifier.verify_subject(token).roles == ("reviewer",)
        hits = idp.jwks_hits
        verifier.verify_subject(idp.signer.issue_subject("emp-9", ["reviewer"]))
        assert idp.jwks_hits == hits  # keys cached, not fetched per token
        # the IdP rotates its key: the unknown kid triggers one refresh and then verifies
        idp.signer = DevIssuer(Ed25519PrivateKey.generate(), idp.issuer_url, "ztcp")
        assert verifier.verify_subject(idp.signer.issue_subject("emp-9", ["reviewer"])).id == "emp-9"
        assert idp.jwks_hits == hits + 1


def test_discovery_naming_another_issuer_is_refused():
    with _Idp() as idp:
        idp.claimed_issuer = "https://evil.example"
        with pytest.raises(ConfigurationError, match="another issuer|issuer"):
            OidcKeySource(idp.issuer_url).key_set()


@pytest.mark.parametrize("claimed", [12345, ["http://127.0.0.1"], None])
def test_discovery_with_a_malformed_issuer_is_a_clear_error(claimed: object) -> None:
    with _Idp() as idp:
        idp.claimed_issuer = claimed  # type: ignore[assignment]
        with pytest.raises(ConfigurationError, match="discovery failed"):
            OidcKeySource(idp.issuer_url).key_set()


def test_unreachable_idp_is_a_clear_error_and_tokens_fail_closed(unused_tcp_port):
    url = f"http://127.0.0.1:{unused_tcp_port}"
    with pytest.raises(ConfigurationError, match="discovery failed"):
        OidcKeySource(url, timeout=0.5).key_set()
    signer = DevIssuer(Ed25519PrivateKey.generate(), url, "ztcp")

    class Down:  # the IdP went away after the verifier was built
        def key_set(self):
            raise ConfigurationError("IdP down")

        def refresh(self):
            raise ConfigurationError("IdP down")

    verifier = JwtVerifier(Down(), url, "ztcp", refresh_interval=0)
    with pytest.raises(SubjectTokenError) as e:  # a refusal (→ deny), never an unhandled error
        verifier.verify_subject(signer.issue_subject("emp-1", ["reviewer"]))
    assert e.value.reason == "keys_unavailable"
