"""Shared fixtures for provenance tests: keys, a ledger on disk, and an event factory."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).parent))  # for provenance_testkit (importlib import mode)

from provenance import Ledger  # noqa: E402


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(ledger_path: Path, signing_key: Ed25519PrivateKey) -> Iterator[Ledger]:
    led = Ledger(ledger_path, signing_key, "ztcp.test/provenance", checkpoint_every=50)
    yield led
    led.close()
