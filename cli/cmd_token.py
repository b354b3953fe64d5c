"""`ztcp token issue`: tokens from the embedded development issuer (embedded mode and demos only)."""

from __future__ import annotations

import json
import time

import click

from cli.durations import DURATION
from cli.errors import EXIT_DENIED, fail
from server.bootstrap import system_keys
from server.identity import dev_issuer
from server.settings import load_settings

METHODS = ("password", "otp", "fido2", "citizen_cert")


@click.group("token")
def command() -> None:
    """Development identity provider (embedded mode)."""


@command.command("issue")
@click.option("--sub", help="end user's subject id (e.g. emp-1)")
@click.option("--role", "roles", multiple=True, help="role, repeatable (e.g. case_officer)")
@click.option("--method", type=click.Choice(METHODS), default="password", show_default=True,
              help="authentication method the token asserts")
@click.option("--mfa", is_flag=True, help="assert multi-factor authentication")
@click.option("--org-unit", help="the user's office / unit")
@click.option("--type", "subject_type", default="employee", show_default=True,
              type=click.Choice(["employee", "citizen", "agency", "mydata_party", "service"]))
@click.option("--citizen-ref", help="the user's own citizen_ref (citizens; staff for self-record checks)")
@click.option("--client", help="calling system (PEP) name: issues a client-credentials access token")
@click.option("--scope", "scopes", multiple=True, help="scope for a client token, repeatable (pdp:decide …)")
@click.option("--ttl", type=DURATION, default="15m", show_default=True, help="lifetime, e.g. 15m, 1h")
@click.option("--json", "as_json", is_flag=True, help="print JSON with the token and its expiry")
def issue(sub, roles, method, mfa, org_unit, subject_type, citizen_ref, client, scopes, ttl, as_json) -> None:
    """Print a signed JWT for an end user (--sub) or a calling system (--client)."""
    settings = load_settings()
    if settings.idp_issuer:
        fail("an external IdP is configured (ZTCP_IDP_ISSUER); get tokens from it, not the dev issuer")
    if not settings.dev_signin_enabled:
        fail("development token issuing is off: ZTCP_HOST is not loopback and ZTCP_DEV_SIGNIN is not true "
             "(set ZTCP_DEV_SIGNIN=true only for a non-production demo)", EXIT_DENIED)
    if bool(sub) == bool(client):
        fail("give either --sub (end user) or --client (calling system)")
    issuer = dev_issuer(settings, system_keys(settings))
    try:
        if client:
            if roles or citizen_ref:
                fail("--role/--citizen-ref are for end-user tokens, not --client")
            token = issuer.issue_client(client, list(scopes), ttl_seconds=ttl)
        else:
            if scopes:
                fail("--scope is for client tokens; end users get --role")
            token = issuer.issue_subject(sub, list(roles), method=method, mfa=mfa, ttl_seconds=ttl,
                                         org_unit=org_unit, subject_type=subject_type, citizen_ref=citizen_ref)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps({"token": token, "expires_at": int(time.time()) + ttl, "kid": issuer.kid}))
    else:
        click.echo(token)
