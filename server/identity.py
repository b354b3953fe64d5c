"""Identity wiring: the token verifier for the configured IdP and the embedded development issuer."""

from __future__ import annotations

from pdp.identity import JwtVerifier, OidcKeySource, StaticKeySource
from pdp.issuer import DevIssuer
from server.bootstrap import IDP_SIGNING, SystemKeys
from server.settings import Settings


def dev_issuer(settings: Settings, keys: SystemKeys) -> DevIssuer:
    return DevIssuer(keys.idp_signing, settings.dev_issuer, settings.idp_audience,
                     verification_keys=keys.public_keys(IDP_SIGNING))


def token_verifier(settings: Settings, keys: SystemKeys) -> JwtVerifier:
    """Verifier for subject and caller tokens: the external IdP if configured, else the dev issuer."""
    if settings.idp_issuer:
        return JwtVerifier(OidcKeySource(settings.idp_issuer), settings.idp_issuer, settings.idp_audience,
                           leeway_seconds=settings.token_leeway_seconds)
    issuer = dev_issuer(settings, keys)
    return JwtVerifier(StaticKeySource(issuer.jwks), settings.dev_issuer, settings.idp_audience,
                       leeway_seconds=settings.token_leeway_seconds)
