"""A real `ztcp serve` on a free port over a seeded home, and headless Chromium (Debian's) via Playwright.

Chromium comes from the system package (scripts/install-system-deps.sh), never `playwright install`.
Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"

_spec = importlib.util.spec_from_file_location("console_seed_home", ROOT / "tests" / "console" / "seed_home.py")
seed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed)


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZTCP_")}
    env.update({"ZTCP_HOME": str(home), "ZTCP_CONFIG": str(home / "no-ztcp.toml"), "ZTCP_ENGINE_TIMEOUT_MS": "2000",
                # The console sits behind the bureau's access proxy, which admits managed devices only.
                "ZTCP_CONSOLE_MANAGED_DEVICES": "true"})
    return env


@contextmanager
def serving(home: Path, env: dict[str, str]) -> Iterator[str]:
    """``ztcp serve`` on a free port over ``home``: yields its base URL; SIGTERM (then kill) afterwards."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--log-level", "warning",
                             "--siem-interval", "3600"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ztcp serve exited with {proc.returncode}: {(home / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("ztcp serve did not become ready in 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """(base URL, seeded facts, home) of a `ztcp serve` subprocess over the console's seeded bureau."""
    home = tmp_path_factory.mktemp("browser") / "home"
    home.mkdir(mode=0o700)
    env = base_env(home)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        facts = seed.seed_home(home)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with serving(home, env) as base:
        yield base, facts, home


@pytest.fixture(scope="module")
def chromium():  # noqa: ANN201
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium, request):  # noqa: ANN001, ANN201
    """A fresh browser context (its own cookies) per test, English unless a test switches."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = chromium.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors  # e.g. a CSP violation or a script error


@pytest.fixture(scope="module")
def serve_tools():  # noqa: ANN201
    """(base_env, serving) for modules that seed their own home."""
    return base_env, serving


def shot(page, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


@pytest.fixture
def screenshot():  # noqa: ANN201
    return shot
