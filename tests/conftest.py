"""Suite-wide fixtures: every test gets its own ZTCP_HOME and no stray ZTCP_* from the machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # integration targets stay visible to marked tests, and so does where the OPA library is
    keep = {"ZTCP_ES_URL", "ZTCP_OPA_URL", "ZTCP_OPA_LIB_DIR"}
    for name in list(os.environ):
        if name.startswith("ZTCP_") and name not in keep:
            monkeypatch.delenv(name)
    monkeypatch.setenv("ZTCP_HOME", str(tmp_path / "ztcp-home"))
    monkeypatch.setenv("ZTCP_CONFIG", str(tmp_path / "no-ztcp.toml"))


@pytest.fixture
def ztcp_home(tmp_path: Path) -> Path:
    return tmp_path / "ztcp-home"


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
