"""The provenance ledger as this installation configures it: store, origin, checkpoint signer, trust."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import keymgmt
import provenance
from provenance.checkpoint import Ed25519Signer
from provenance.postgres_store import PostgresLedgerStore
from provenance.sqlite_store import SqliteLedgerStore
from provenance.store import LedgerStore
from provenance.witness import WitnessEndpoint, Witnessing
from server.bootstrap import CHECKPOINT_SIGNING, SystemKeys, system_keys
from server.keys import build_vault_provider
from server.settings import Settings

LEDGER_FILE = "provenance.db"
DEFAULT_ORIGIN = "ztcp.local/provenance"


def ledger_store(settings: Settings, path: Path | None = None) -> LedgerStore:
    """The storage driver under the ledger: the one place it is chosen. ``path``: that SQLite ledger
    file (a backup's copy, say), whatever else is configured; else PostgreSQL when ZTCP_DATABASE_URL
    is set (every replica on one database, integrating in the background); else the SQLite file in
    ZTCP_HOME."""
    if path is None and settings.database_url:
        return PostgresLedgerStore(settings.database_url)
    return SqliteLedgerStore(path or settings.ensure_home() / LEDGER_FILE)


def ledger_database(settings: Settings) -> LedgerStore | None:
    """The ledger's store when it lives outside ZTCP_HOME (PostgreSQL), for ``ztcp backup``."""
    return PostgresLedgerStore(settings.database_url) if settings.database_url else None


def ledger_from_settings(settings: Settings, keys: SystemKeys | None = None, *,
                         path: Path | None = None, integrator: bool = False) -> provenance.Ledger:
    """The installation's ledger (``ledger_store``), signing checkpoints with the system checkpoint key.

    ``integrator``: on PostgreSQL, be a candidate to extend the tree behind the writers (``ztcp
    serve``); other commands integrate what they need themselves when no integrator is running.

    With Vault/OpenBao configured (``checkpoint_key`` auto or vault) the key is a transit ``ed25519``
    key: the private half never reaches this host, so whoever controls the host can rewrite the
    ledger file but not sign a checkpoint vouching for it. Every trusted version verifies old
    checkpoints after a rotation; the local key is trusted too only if ``checkpoint_trust_local``
    says so (a ledger that was signed locally before the move).
    """
    origin = getattr(settings, "ledger_origin", None) or DEFAULT_ORIGIN
    in_vault = settings.checkpoint_in_vault

    def local_keys() -> list[Ed25519PublicKey]:
        return (keys if keys is not None else system_keys(settings)).public_keys(CHECKPOINT_SIGNING)

    signer: Ed25519PrivateKey | Ed25519Signer
    if in_vault:
        provider = build_vault_provider(settings, settings.vault_addr or "")  # (set: the settings check)
        provider.ensure(CHECKPOINT_SIGNING, "ed25519")
        signer = keymgmt.TransitSigningKey(provider, CHECKPOINT_SIGNING)
        trusted = list(provider.ed25519_public_keys(CHECKPOINT_SIGNING).values())
        if settings.checkpoint_trust_local:
            trusted += local_keys()
    else:
        keys = keys if keys is not None else system_keys(settings)
        signer, trusted = keys.checkpoint_signing, local_keys()
    return provenance.Ledger(
        store=ledger_store(settings, path),
        signing_key=signer,
        origin=origin,
        trusted_keys=trusted,
        checkpoint_in_append=not in_vault,  # a key server must never stall a durable append
        publish=provenance.NotePublisher(settings.publish_dir),
        integrator=integrator,
    )


def witness_endpoints(settings: Settings) -> list[WitnessEndpoint]:
    from server.errors import ConfigError

    endpoints = []
    for i, w in enumerate(settings.witnesses):
        try:
            endpoints.append(WitnessEndpoint.parse(w["url"], w["key"]))
        except (KeyError, TypeError, provenance.ProvenanceError) as exc:
            raise ConfigError(f"ZTCP_WITNESSES[{i}]: needs url and key (ztcp witness key): {exc}") from None
    return endpoints


class PublishChain:
    """Every publishing step gets every checkpoint, whether or not an earlier one failed."""

    def __init__(self, *steps: Callable[[int, str], None]) -> None:
        self.steps = steps

    def __call__(self, size: int, note: str) -> None:
        failure: Exception | None = None
        for step in self.steps:
            try:
                step(size, note)
            except Exception as exc:  # noqa: BLE001 - reported after the other steps ran
                failure = failure or exc
        if failure is not None:
            raise failure


def attach_witnessing(settings: Settings, ledger: provenance.Ledger) -> Witnessing | None:
    """For a serving process: send every new checkpoint to the configured witnesses (off the append path)."""
    endpoints = witness_endpoints(settings)
    if not endpoints:
        return None
    witnessing = Witnessing(endpoints, ledger.consistency_proof, settings.witnessed_dir)
    ledger.publish = PublishChain(*(s for s in (ledger.publish, witnessing) if s is not None))
    return witnessing

