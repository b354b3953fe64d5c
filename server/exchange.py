"""The exchange and trusted time as this installation configures them (composition only).

* the TSA client and verifier (``ZTCP_TSA_URL``, ``ZTCP_TSA_CA_FILE``);
* the checkpoint stamper chained after publishing (every checkpoint time-stamped, off the append path);
* the exchange service: the signing key (Vault transit when configured, else the sealed keyring's
  ``exchange-signing``), the agreements register of the *active signed revision*, the transfer
  register ``ZTCP_HOME/exchange.db``;
* for ``ztcp serve``: a sweeper that records overdue receipts and time-stamps transfers made while
  the TSA was unreachable, once a minute.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from server.bootstrap import EXCHANGE_SIGNING
from server.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fastapi import FastAPI, Request

    import provenance
    from exchange import ExchangeService, Operator
    from keymgmt import TransitSigningKey
    from pdp.http_auth import BearerAuth
    from pdp.identity import SubjectIdentity
    from provenance.timestamp import CheckpointStamper, TsaClient, TsaVerifier
    from server.bootstrap import SystemKeys
    from server.runtime import Runtime

log = logging.getLogger("ztcp.exchange")
STORE_FILE = "exchange.db"


def tsa_client(settings: Settings) -> TsaClient | None:
    if not settings.tsa_url:
        return None
    from provenance.timestamp import TsaClient

    return TsaClient(settings.tsa_url)


def tsa_verifier(settings: Settings) -> TsaVerifier | None:
    if not settings.tsa_ca_file:
        return None
    from provenance.timestamp import TsaVerifier

    return TsaVerifier.from_pem_file(settings.tsa_ca_file)


def attach_stamping(settings: Settings, ledger: provenance.Ledger) -> CheckpointStamper | None:
    """Time-stamp every new checkpoint (and any earlier one without a token) when a TSA is configured."""
    client = tsa_client(settings)
    if client is None:
        return None
    from provenance.timestamp import CheckpointStamper
    from server.ledger import PublishChain

    def checkpoints() -> list[tuple[int, str]]:
        return [(row[0], row[3]) for row in ledger.raw_checkpoints()]

    stamper = CheckpointStamper(client, settings.timestamps_dir, checkpoints)
    ledger.publish = PublishChain(*(s for s in (ledger.publish, stamper) if s is not None))
    return stamper


def exchange_signer(settings: Settings, keys: SystemKeys) -> Ed25519PrivateKey | TransitSigningKey:
    """Transfer records are signed in Vault/OpenBao transit when it is configured (the private key
    never reaches this host), else with the sealed keyring's ``exchange-signing`` key."""
    if settings.vault_addr:
        import keymgmt
        from server.keys import build_vault_provider

        provider = build_vault_provider(settings, settings.vault_addr)
        provider.ensure(EXCHANGE_SIGNING, "ed25519")
        return keymgmt.TransitSigningKey(provider, EXCHANGE_SIGNING)
    return keys.exchange_signing


def signed_registers(runtime: Runtime) -> dict[str, Any]:
    """``data.bureau`` of the active signed revision: the agreements register the PDP enforces."""
    store = runtime.revision_store
    active = store.active()
    if active is None:
        from policy import load_pack

        return load_pack(runtime.settings.policy_dir).data.get("bureau") or {}
    cache = runtime.__dict__.setdefault("_exchange_registers", {})
    if active.revision not in cache:
        cache.clear()
        cache[active.revision] = store.pack(active.revision).data.get("bureau") or {}
    return cache[active.revision]


def build_service(runtime: Runtime) -> ExchangeService:
    import exchange

    settings = runtime.settings
    store = exchange.ExchangeStore(runtime.home / STORE_FILE)
    runtime._closers.append(store.close)
    config = exchange.ExchangeConfig(tsa_policy=settings.exchange_tsa_unavailable,
                                     receipt_hours=settings.exchange_receipt_hours, chunk=settings.exchange_chunk)
    return exchange.ExchangeService(
        point=runtime.point, recorder=runtime.recorder, ledger=runtime.ledger, readers=runtime.protected_reader,
        decision_verifier=runtime.decision_verifier, key_provider=runtime.key_provider,
        blind_index_key=lambda: runtime.keys.blind_index, registers=lambda: signed_registers(runtime),
        signer=exchange_signer(settings, runtime.keys), store=store, tsa=tsa_client(settings),
        tsa_verifier=tsa_verifier(settings), config=config, clock=runtime.clock,
        classification=runtime.dataset_classification, key_audit=runtime.key_audit)


def cli_operator(runtime: Runtime, subject: SubjectIdentity, token: str) -> Operator:
    """The operator of a batch started at the command line: the verified subject, on this host
    (``ZTCP_EXCHANGE_DEVICE_ID``, posture from the device inventory), on the internal network."""
    import exchange
    from contracts.decision import Context, Device, Posture

    device_id = runtime.settings.exchange_device_id
    record = runtime.device_inventory.get(device_id)
    device = Device(id=device_id, managed=bool(record and record.active and record.managed),
                    compliant=bool(record and record.active and record.compliant),
                    posture=record.posture if record and record.active else Posture())
    return exchange.Operator(id=subject.id, roles=tuple(subject.roles), unit=subject.org_unit, token=token,
                             device=device, context=Context(network_zone="internal", channel="exchange-cli"))


class Sweeper:
    """For ``ztcp serve``: overdue receipts recorded and pending time-stamps retried, every ``interval`` s."""

    def __init__(self, service: ExchangeService, interval: float = 60.0,
                 gate: Callable[[], bool] | None = None) -> None:
        self.service = service
        self.interval = interval
        self.gate = gate  # with replicas: only the holder of the leader lease sweeps (server/leader.py)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ztcp-exchange-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_once(self) -> dict[str, Any]:
        overdue = self.service.sweep_overdue()
        stamped = self.service.stamp_pending()
        return {"overdue": overdue, "stamped": stamped}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.gate is not None and not self.gate():
                continue
            try:
                self.run_once()
                self.error = None
            except Exception as exc:  # noqa: BLE001 - keep sweeping; visible in status
                self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("exchange sweep failed: %s", self.error)


def mount_exchange(app: FastAPI, runtime: Runtime, auth: BearerAuth) -> None:
    """The exchange's routes; the caller's device and context are believed as the gateway believes them."""
    from exchange.api import BatchJobs, create_router

    service = runtime.exchange

    def operator(request: Request, subject: SubjectIdentity) -> Operator:
        import exchange

        device, ctx = runtime.context_resolver.resolve(request)
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        return exchange.Operator(id=subject.id, roles=tuple(subject.roles), unit=subject.org_unit, token=token,
                                 device=device, context=ctx)

    jobs = BatchJobs(service, runtime.home / "exchange" / "outbox")
    app.include_router(create_router(service, jobs, require_caller=auth.require_scope,
                                     require_subject=auth.require_subject, operator=operator))
