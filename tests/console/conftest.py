"""Fixtures for the console's HTTP tests: one seeded bureau copied into each test's ZTCP_HOME."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

_spec = importlib.util.spec_from_file_location("console_seed_home", Path(__file__).with_name("seed_home.py"))
seed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed)

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LOGIN_CSRF = re.compile(r'name="csrf" id="login-csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("console-seed") / "home"
    home.mkdir(mode=0o700)
    saved = {k: v for k, v in os.environ.items() if k.startswith("ZTCP_")}
    for k in saved:
        del os.environ[k]
    os.environ["ZTCP_HOME"] = str(home)
    os.environ["ZTCP_CONFIG"] = str(home / "no-ztcp.toml")
    try:
        facts = seed.seed_home(home)
    finally:
        for k in [k for k in os.environ if k.startswith("ZTCP_")]:
            del os.environ[k]
        os.environ.update(saved)
    return home, facts


class Browser:
    """A TestClient session of one person, from a bureau address (127.0.0.1)."""

    def __init__(self, app, *, https: bool = False) -> None:  # noqa: ANN001
        base = "https://testserver" if https else "http://testserver"
        self.client = TestClient(app, base_url=base, client=("127.0.0.1", 50000), follow_redirects=False)

    def csrf(self, path: str) -> str:
        r = self.client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        return CSRF.search(r.text).group(1)

    def login_csrf(self) -> str:
        r = self.client.get("/console/signin")
        return LOGIN_CSRF.search(r.text).group(1)

    def sign_in(self, staff: str) -> None:
        token = self.login_csrf()
        r = self.client.post("/console/signin/dev", data={"csrf": token, "staff": staff})
        assert r.status_code == 303 and r.headers["location"] == "/console/", r.text[:500]

    def post(self, path: str, data: dict, *, csrf_from: str) -> object:
        return self.client.post(path, data={**data, "csrf": self.csrf(csrf_from)})


@pytest.fixture
def world(seeded_template, ztcp_home: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """(runtime, app, facts) over a fresh copy of the seeded bureau; the console trusts device posture
    (an access proxy admits managed devices) unless a test says otherwise."""
    from server.app import create_app
    from server.runtime import Runtime
    from server.settings import load_settings

    template, facts = seeded_template
    shutil.copytree(template, ztcp_home)
    monkeypatch.setenv("ZTCP_CONSOLE_MANAGED_DEVICES", "true")
    rt = Runtime(load_settings(engine_timeout_ms=2000))
    app = create_app(rt)
    yield rt, app, facts
    rt.close()


@pytest.fixture
def new_browser(world):  # noqa: ANN001, ANN201
    """Another person's browser on the same server: ``with new_browser() as b: b.sign_in(...)``."""
    from contextlib import contextmanager

    _, app, _ = world

    @contextmanager
    def make(*, https: bool = False):  # noqa: ANN202
        b = Browser(app, https=https)
        with b.client:
            yield b

    return make


@pytest.fixture
def console(world):  # noqa: ANN001, ANN201
    return world[1].state.console


@pytest.fixture
def browser(world):  # noqa: ANN001, ANN201
    _, app, _ = world
    b = Browser(app)
    with b.client:
        yield b
