"""Development sign-in only where it is safe (issue #13, finding 2).

Development sign-in lets whoever reaches the console act as anyone in the staff directory, and
`ztcp token issue` mints any role: on with ``ZTCP_DEV_SIGNIN=true``, or by default only on a
loopback bind with no IdP; ``ztcp serve --host 0.0.0.0`` without an IdP refuses to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.main import ztcp
from server.app import create_app
from server.runtime import Runtime
from server.settings import load_settings


@pytest.mark.parametrize(("env", "enabled"), [
    ({}, True),
    ({"ZTCP_HOST": "::1"}, True),
    ({"ZTCP_HOST": "localhost"}, True),
    ({"ZTCP_HOST": "0.0.0.0"}, False),  # noqa: S104 - the point of the test
    ({"ZTCP_HOST": "10.1.2.3"}, False),
    ({"ZTCP_HOST": "0.0.0.0", "ZTCP_DEV_SIGNIN": "true"}, True),  # noqa: S104
    ({"ZTCP_DEV_SIGNIN": "false"}, False),
    ({"ZTCP_IDP_ISSUER": "https://idp.bureau.example"}, False),
])
def test_when_development_sign_in_is_on(monkeypatch: pytest.MonkeyPatch, env: dict, enabled: bool) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings().dev_signin_enabled is enabled


def test_dev_signin_and_an_idp_exclude_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTCP_DEV_SIGNIN", "true")
    monkeypatch.setenv("ZTCP_IDP_ISSUER", "https://idp.bureau.example")
    result = CliRunner().invoke(ztcp, ["audit", "verify"])
    assert result.exit_code == 1 and "ZTCP_DEV_SIGNIN=true and ZTCP_IDP_ISSUER exclude each other" in result.output


def test_serve_on_all_interfaces_without_an_idp_refuses_to_start(ztcp_home: Path) -> None:
    env = {**os.environ, "ZTCP_HOME": str(ztcp_home), "ZTCP_HOST": "0.0.0.0", "ZTCP_PORT": "1"}  # noqa: S104
    env.pop("ZTCP_DEV_SIGNIN", None)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "serve"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "refusing to serve on 0.0.0.0 without an identity provider" in proc.stderr
    assert "ZTCP_IDP_ISSUER" in proc.stderr and "Traceback" not in proc.stderr
    assert "serving on" not in proc.stdout


def test_token_issue_is_refused_when_dev_signin_is_off(ztcp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTCP_HOST", "0.0.0.0")  # noqa: S104
    result = CliRunner().invoke(ztcp, ["token", "issue", "--sub", "emp-1", "--role", "auditor"])
    assert result.exit_code == 2 and "development token issuing is off" in result.output
    monkeypatch.setenv("ZTCP_DEV_SIGNIN", "true")
    result = CliRunner().invoke(ztcp, ["token", "issue", "--sub", "emp-1", "--role", "auditor"])
    assert result.exit_code == 0 and result.output.count(".") == 2


def test_the_console_offers_no_dev_signin_when_it_is_off(ztcp_home: Path) -> None:
    rt = Runtime(load_settings(dev_signin=False))
    (rt.home / "directory.json").write_text('{"staff": [{"id": "emp-aud-1", "roles": ["auditor"]}]}')
    try:
        with TestClient(create_app(rt), base_url="http://127.0.0.1") as client:
            page = client.get("/console/signin")
            assert page.status_code == 200 and "emp-aud-1" not in page.text
            assert "ZTCP_DEV_SIGNIN" in page.text  # says how to get a sign-in method
            login = page.cookies.get("ztcp_console_login") or ""
            r = client.post("/console/signin/dev", data={"staff": "emp-aud-1", "csrf": login})
            assert r.status_code == 404 and "ztcp_console_session" not in r.cookies
    finally:
        rt.close()
