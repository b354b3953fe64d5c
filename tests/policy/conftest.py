"""Small real packs for the policy lifecycle tests (the default pack is exercised too)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

AUTHZ = """package ztcp.authz

import rego.v1

default decision := {
	"effect": "deny",
	"risk": {"score": 0, "level": "low", "factors": []},
	"reasons": ["no_permit"],
	"obligations": [],
	"permitted_fields": [],
}

score := min([100, input.signals.recent_denies_1h * data.ztcp.config.weights.recent_denies])

level := "critical" if score >= 90
else := "high" if score >= data.ztcp.config.thresholds.deny
else := "medium" if score >= data.ztcp.config.thresholds.step_up
else := "low"

decision := {
	"effect": "permit",
	"risk": {"score": score, "level": level, "factors": []},
	"reasons": ["role_allows"],
	"obligations": [{"type": "record_provenance"}],
	"permitted_fields": input.resource.fields,
} if {
	input.action in data.ztcp.config.allowed_actions
	score < data.ztcp.config.thresholds.step_up
}

decision := {
	"effect": "step_up",
	"risk": {"score": score, "level": level, "factors": []},
	"reasons": ["risk_step_up"],
	"obligations": [{"type": "step_up", "method": "fido2"}],
	"permitted_fields": [],
} if {
	input.action in data.ztcp.config.allowed_actions
	score >= data.ztcp.config.thresholds.step_up
	score < data.ztcp.config.thresholds.deny
}

decision := {
	"effect": "deny",
	"risk": {"score": score, "level": level, "factors": []},
	"reasons": ["risk_too_high"],
	"obligations": [],
	"permitted_fields": [],
} if {
	input.action in data.ztcp.config.allowed_actions
	score >= data.ztcp.config.thresholds.deny
}
"""

AUTHZ_TEST = """package ztcp.authz_test

import rego.v1

import data.ztcp.authz

base := {"action": "read", "resource": {"fields": ["name"]}, "signals": {"recent_denies_1h": 0}}

test_read_permitted if {
	authz.decision.effect == "permit" with input as base
}

test_export_denied if {
	authz.decision.effect == "deny" with input as object.union(base, {"action": "export"})
}

test_many_denies_step_up if {
	d := authz.decision with input as object.union(base, {"signals": {"recent_denies_1h": 3}})
	d.effect == "step_up"
}
"""

CONFIG = {
    "allowed_actions": ["read", "search"],
    "weights": {"recent_denies": 15},
    "thresholds": {"step_up": 40, "deny": 70},
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["allowed_actions", "weights", "thresholds"],
    "properties": {
        "allowed_actions": {"type": "array", "items": {"type": "string"}},
        "weights": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "thresholds": {
            "type": "object",
            "required": ["step_up", "deny"],
            "properties": {
                "step_up": {"type": "integer", "minimum": 0, "maximum": 100},
                "deny": {"type": "integer", "minimum": 0, "maximum": 100},
            },
        },
    },
}


def pack_files(config: dict | None = None, **extra: str | bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {
        "ztcp/authz.rego": AUTHZ.encode(),
        "ztcp/authz_test.rego": AUTHZ_TEST.encode(),
        "ztcp/config/data.json": (json.dumps(config or CONFIG, indent=2) + "\n").encode(),
        "schema/config.schema.json": (json.dumps(SCHEMA, indent=2) + "\n").encode(),
    }
    for name, content in extra.items():
        files[name.replace("__", "/")] = content.encode() if isinstance(content, str) else content
    return files


def write_pack(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    return root


@pytest.fixture
def make_pack(tmp_path: Path) -> Callable[..., Path]:
    counter = {"n": 0}

    def make(files: dict[str, bytes] | None = None, name: str | None = None) -> Path:
        counter["n"] += 1
        return write_pack(tmp_path / (name or f"pack{counter['n']}"), files if files is not None else pack_files())

    return make


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(autouse=True)
def _quiet_eddsa_name() -> None:
    # policy.bundle filters this at import; pytest resets filters per test, so repeat it here.
    warnings.filterwarnings("ignore", message="EdDSA is deprecated")


@pytest.fixture
def base_files() -> dict[str, bytes]:
    """The small pack's files (fresh copy per test)."""
    return pack_files()


@pytest.fixture
def files_with() -> Callable[..., dict[str, bytes]]:
    """``files_with(config=…, **{"path__with__slashes": content})``."""
    return pack_files
