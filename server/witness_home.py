"""A witness's own home: its sealed key, the logs it trusts, its record of what it cosigned.

The witness runs apart from the ledger (its own host in production, at least its own home and
master key): whoever can rewrite the ledger must not also hold what the witness remembers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keymgmt
from provenance.checkpoint import NoteVerifier
from provenance.witness import CosignatureSigner, TrustedLog, Witness
from server.errors import ConfigError

CONFIG_FILE = "witness.json"
STATE_FILE = "witnessed.db"
SIGNING_KEY = "witness-signing"


def _config_path(home: Path) -> Path:
    return home / CONFIG_FILE


def init_home(home: Path, name: str, ledger_home: Path | None = None) -> str:
    """Create a witness home (0700) with a new sealed signing key; returns its verifier key."""
    home = Path(home).expanduser().resolve()
    if ledger_home is not None and home == Path(ledger_home).expanduser().resolve():
        raise ConfigError("a witness in the ledger's own home witnesses nothing: give it a home of its own")
    if _config_path(home).exists():
        raise ConfigError(f"{home} is already a witness home")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    signer = _signer(home, name, create=True)
    _config_path(home).write_text(json.dumps({"name": name, "logs": []}, indent=1))
    return signer.verifier_key


def _load(home: Path) -> dict[str, Any]:
    try:
        return json.loads(_config_path(home).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{home} is not a witness home (run: ztcp witness init)") from None


def _signer(home: Path, name: str, *, create: bool = False) -> CosignatureSigner:
    ring = keymgmt.open_local_keyring(home, os.environ.get("ZTCP_WITNESS_MASTER_KEY"))
    if create:
        ring.ensure(SIGNING_KEY, "ed25519")
    return CosignatureSigner(ring.ed25519_private(SIGNING_KEY), name)


def trust_log(home: Path, origin: str, log_key: str) -> None:
    """Add (or replace) a log this witness cosigns for: its origin and checkpoint verifier key."""
    NoteVerifier.from_vkey(log_key)  # refuse a malformed key now, not at the first checkpoint
    config = _load(home)
    config["logs"] = [entry for entry in config["logs"] if entry["origin"] != origin]
    config["logs"].append({"origin": origin, "key": log_key})
    _config_path(home).write_text(json.dumps(config, indent=1))


def verifier_key(home: Path) -> str:
    return _signer(home, _load(home)["name"]).verifier_key


def open_witness(home: Path) -> Witness:
    config = _load(home)
    if not config["logs"]:
        raise ConfigError("this witness trusts no log yet (run: ztcp witness trust --origin O --log-key KEY)")
    logs = [TrustedLog(entry["origin"], NoteVerifier.from_vkey(entry["key"])) for entry in config["logs"]]
    return Witness(home / STATE_FILE, _signer(home, config["name"]), logs)
