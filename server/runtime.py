"""The composition root: builds every component from Settings, once, for `ztcp serve` and the CLI.

Packages take explicit keys, paths and collaborators; only this module knows where they come from
(the sealed keyring, ``ZTCP_HOME``, backend URLs). Components are built lazily so a CLI command
pays only for what it uses.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import ContextResolver, Gateway, load_sites
from pdp.calendar import BusinessCalendar
from pdp.decision_log import DecisionLog, DecisionLogStore, ElasticsearchSink, LogSink
from pdp.devices import INVENTORY_FILE, DeviceAuthenticator, DeviceCA, DeviceInventory, PostureVerifier
from pdp.engine import create_engine
from pdp.identity import JwtVerifier, OidcKeySource, StaticKeySource
from pdp.issuer import DevIssuer
from pdp.metrics import PdpMetrics
from pdp.point import ActivePolicy, DecisionPoint
from pdp.reload import PolicyReloader
from pdp.signals import SignalHistory, SignalStore
from pdp.sqlite_stores import SqliteDecisionStore, SqliteSignalStore
from pdp.tokens import DecisionTokenSigner, DecisionTokenVerifier
from policy import GOVERNED_REGISTERS, PolicyPack, RevisionStore, ensure_initial_revision, load_pack
from server.bootstrap import BUNDLE_SIGNING, DECISION_SIGNING, SystemKeys, system_keys
from server.errors import ConfigError
from server.identity import dev_issuer, token_verifier
from server.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from elasticsearch import Elasticsearch

    from contracts import ProvenanceEvent
    from exchange.service import ExchangeService
    from keymgmt import KeyAuditLog, KeyProvider, ProtectedReader
    from provenance import Ledger, Recorder
    from provenance.timestamp import CheckpointStamper
    from provenance.witness import Witnessing
    from siem_rules import AlertBackend

log = logging.getLogger("ztcp.runtime")
BUREAU_DATA_FILE = "bureau-data.json"
DECISION_LOG_FILE = "decisions.db"  # without ZTCP_DATABASE_URL
SIGNALS_FILE = "signals.db"


def open_revision_store(settings: Settings, *, required_approvals: int = 1) -> RevisionStore:
    """The policy revision store: in PostgreSQL with ``ZTCP_DATABASE_URL`` (every replica publishes
    to it and follows it), else ``ZTCP_HOME/policy.db``."""
    if settings.database_url:
        return RevisionStore(settings.database_url, required_approvals=required_approvals)
    return RevisionStore.in_home(settings.ensure_home(), required_approvals=required_approvals)


class Runtime:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.home = settings.ensure_home()
        # One "now" for everything that stamps or checks time (decisions, token checks, provenance,
        # key audit): the demo's simulated week passes a settable clock here.
        self.clock = clock
        self._closers: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._classes: dict[str, str | None] = {}
        self.witnessing: Witnessing | None = None  # set with the ledger when ZTCP_WITNESSES lists witnesses
        self.stamper: CheckpointStamper | None = None  # set with the ledger when ZTCP_TSA_URL names a TSA
        self.lease: Any = None  # `ztcp serve`: the scheduler's leader lease (server/leader.py)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def provenance_event(self, **fields: object) -> ProvenanceEvent:
        """A provenance event stamped with this runtime's clock (unless ``time`` is given)."""
        import contracts

        fields.setdefault("time", self.now())
        return contracts.ProvenanceEvent.model_validate(fields)

    # -- identity and keys ------------------------------------------------------------------
    @cached_property
    def keys(self) -> SystemKeys:
        return system_keys(self.settings)

    @cached_property
    def issuer(self) -> DevIssuer | None:
        return None if self.settings.idp_issuer else dev_issuer(self.settings, self.keys)

    @cached_property
    def verifier(self) -> JwtVerifier:
        return token_verifier(self.settings, self.keys)

    @cached_property
    def decision_signer(self) -> DecisionTokenSigner:
        return DecisionTokenSigner(self.keys.decision_signing, issuer=self.decision_issuer,
                                   ttl_seconds=self.settings.decision_ttl_seconds)

    @property
    def decision_issuer(self) -> str:
        return f"{self.settings.dev_issuer.rstrip('/')}/pdp"

    @cached_property
    def decision_verifier(self) -> DecisionTokenVerifier:
        """Trusts every decision-signing key version still allowed, so rotation keeps tokens valid."""
        return DecisionTokenVerifier(self.keys.public_keys(DECISION_SIGNING), issuer=self.decision_issuer)

    # -- policy -----------------------------------------------------------------------------
    def bureau_data(self) -> dict[str, Any] | None:
        """Operational facts (cases, agreements, consents) maintained by the bureau, if present."""
        path = self.home / BUREAU_DATA_FILE
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def dataset_classification(self, dataset: str) -> str | None:
        """The dataset's classification in the signed register of the active revision, so a PEP can
        declare it and the decision log shows what the policy saw."""
        return self._classes.get(dataset)

    def _bureau_for(self, pack: PolicyPack) -> dict[str, Any] | None:
        """``data.bureau`` for ``pack``: its own signed registers (agreements, protected citizens,
        datasets) and the live feed's operational facts (cases, consents). A register in the live
        file that differs from the signed one is ignored, and said so: it would change decisions
        with no signature and no second officer."""
        live = self.bureau_data()
        signed = pack.data.get("bureau") or {}
        if live is None:
            return None  # the pack's own bureau data, as signed
        merged = dict(live)
        for key in GOVERNED_REGISTERS:
            if key in live and live[key] != signed.get(key):
                log.warning("%s: %s ignored; registers change only through a signed, approved policy revision "
                            "(bureau/data.json in the pack: ztcp policy propose / approve / publish)",
                            BUREAU_DATA_FILE, key)
            if key in signed:
                merged[key] = signed[key]
            else:
                merged.pop(key, None)
        return merged

    def pack(self) -> PolicyPack:
        return load_pack(self.settings.policy_dir)

    def build_active(self, pack: PolicyPack, revision: str | None) -> ActivePolicy:
        bureau = self._bureau_for(pack)
        datasets = (pack.data.get("bureau") or {}).get("datasets") or {}
        self._classes = {k: v.get("classification") for k, v in datasets.items() if isinstance(v, dict)}
        engine = create_engine(pack, self.settings.engine if not self.settings.opa_url else "opa",
                               revision=revision, extra_data={"bureau": bureau} if bureau else None,
                               opa_url=self.settings.opa_url, opa_push=self.settings.opa_push)
        calendar_config = pack.data.get("ztcp", {}).get("config", {}).get("calendar")
        return ActivePolicy(engine=engine,
                            calendar=BusinessCalendar.from_config(calendar_config, self.settings.timezone))

    # -- decision point ---------------------------------------------------------------------
    @cached_property
    def metrics(self) -> PdpMetrics:
        return PdpMetrics()

    @cached_property
    def decision_log(self) -> DecisionLog:
        """The decision log: in PostgreSQL when ``ZTCP_DATABASE_URL`` is set (shared by replicas),
        else ``ZTCP_HOME/decisions.db``."""
        sinks: list[LogSink] = []
        if self.settings.es_url:
            sinks.append(ElasticsearchSink(self.elasticsearch))
        dlog = DecisionLog(self.decision_store(), sinks=sinks)
        self._closers.append(dlog.close)
        return dlog

    def decision_store(self, *, readonly: bool = False) -> DecisionLogStore:
        """A new handle on the decision log's store (the SIEM and the CLI read through their own)."""
        if self.settings.database_url:
            from pdp.pg_stores import PostgresDecisionStore

            return PostgresDecisionStore(self.settings.database_url, readonly=readonly)
        return SqliteDecisionStore(self.home / DECISION_LOG_FILE, readonly=readonly)

    @cached_property
    def elasticsearch(self) -> Elasticsearch:
        from elasticsearch import Elasticsearch

        api_key = self.settings.es_api_key.get_secret_value() if self.settings.es_api_key else None
        return Elasticsearch(self.settings.es_url, api_key=api_key)

    @cached_property
    def history(self) -> SignalHistory:
        """The signal history: in memory, written behind to PostgreSQL when ``ZTCP_DATABASE_URL`` is
        set (and following the other replicas' observations there), else to ``ZTCP_HOME/signals.db``."""
        if self.settings.database_url:
            from pdp.pg_stores import PostgresSignalStore

            store: SignalStore = PostgresSignalStore(self.settings.database_url)
        else:
            store = SqliteSignalStore(self.home / SIGNALS_FILE)
        history = SignalHistory(store=store, clock=self.clock)
        self._closers.append(history.close)
        return history

    @cached_property
    def revision_store(self) -> RevisionStore:
        store = open_revision_store(self.settings)
        self._closers.append(store.close)
        return store

    def bundle_public_keys(self) -> list[Ed25519PublicKey]:
        return self.keys.public_keys(BUNDLE_SIGNING)

    @cached_property
    def point(self) -> DecisionPoint:
        """The decision point on the store's active revision (the default pack becomes r1 on first start)."""
        ensure_initial_revision(self.revision_store, self.pack(), self.keys.bundle_signing)
        point = DecisionPoint(verifier=self.verifier, signer=self.decision_signer, log=self.decision_log,
                              history=self.history, active=None,
                              timeout_ms=self.settings.engine_timeout_ms, metrics=self.metrics,
                              clock=self.clock)
        self._closers.insert(0, point.close)
        self.reloader = PolicyReloader(self.revision_store, self.bundle_public_keys, self.build_active, point,
                                       watch_files=[self.home / BUREAU_DATA_FILE])
        self.reloader.check()  # activate now; `ztcp serve` then keeps following the store
        self._closers.insert(0, self.reloader.stop)
        return point

    # -- provenance and protected data (used by the gateway) -----------------------------------
    @cached_property
    def ledger(self) -> Ledger:
        """The provenance ledger (same store and keys as ``ztcp audit``). On PostgreSQL this process is
        one of the candidates that integrate (extend the tree behind every replica's writers)."""
        from server.ledger import attach_witnessing, ledger_from_settings

        ledger = ledger_from_settings(self.settings, self.keys, integrator=True)
        self._closers.append(ledger.close)
        self.witnessing = attach_witnessing(self.settings, ledger)
        if self.witnessing is not None:
            self._closers.insert(0, self.witnessing.close)
        from server.exchange import attach_stamping

        self.stamper = attach_stamping(self.settings, ledger)  # every checkpoint time-stamped (off the append path)
        if self.stamper is not None:
            self._closers.insert(0, self.stamper.close)
        return ledger

    @cached_property
    def recorder(self) -> Recorder:
        """Group-commit recorder over :attr:`ledger`: ``record`` returns once the event is durable."""
        import provenance

        recorder = provenance.Recorder(self.ledger, checkpoint_timer=True)  # signed checkpoints every T s
        self._closers.insert(0, recorder.close)
        return recorder

    def sealed_cases(self) -> set[str]:
        """Open sealed investigations: their records stay out of the citizen's view until closed."""
        cases = (self.bureau_data() or {}).get("cases", {})
        return {cid for cid, c in cases.items() if c.get("sealed") and c.get("status") != "closed"}

    @cached_property
    def key_provider(self) -> KeyProvider:
        from server.keys import build_provider

        return build_provider(self.settings)

    @cached_property
    def key_audit(self) -> KeyAuditLog:
        import keymgmt

        return keymgmt.KeyAuditLog(keymgmt.default_audit_path(self.home), clock=self.clock)

    @cached_property
    def protected_engine(self) -> sa.Engine:
        import keymgmt

        engine = keymgmt.make_engine(self.settings.protected_db_url)
        self._closers.append(engine.dispose)
        return engine

    def protected_reader(self, dataset: str) -> ProtectedReader | None:
        """The decision gate over the registered protected table of ``dataset``; None if there is none.

        Built once per dataset (the envelope's DEK cache is per instance); a table registered after
        the first miss is found on the next call.
        """
        import keymgmt

        with self._lock:
            readers: dict[str, ProtectedReader] = self.__dict__.setdefault("_readers", {})
            if dataset in readers:
                return readers[dataset]
            spec = next((s for s in keymgmt.registered_specs(self.protected_engine) if s.dataset == dataset),
                        None)
            if spec is None:
                return None
            engine = self.protected_engine
            blind = (keymgmt.BlindIndexKeys(self.key_provider, length=spec.bi_length)
                     if spec.blind_index else None)
            table = keymgmt.EncryptedTable(engine, spec, keymgmt.Envelope(self.key_provider, engine), blind)
            reader = keymgmt.ProtectedReader(table, self.decision_verifier, self.recorder, self.key_audit,
                                             system="ztcp-gateway", event_factory=self.provenance_event)
            readers[dataset] = reader
            return reader

    # -- SIEM (the scheduler itself is built by server.siem) ---------------------------------------
    @property
    def siem_db_path(self) -> Path:
        from server.siem import DB_NAME

        return self.home / DB_NAME

    def logs_status(self) -> dict[str, Any]:
        """Retention, holds, delivery backlog and archives, for the console (server.log_status)."""
        from server.log_status import logs_status

        return logs_status(self.settings, getattr(self, "delivery_thread", None))

    @contextmanager
    def alerts(self) -> Iterator[AlertBackend]:
        """The alert store for one request: with ``ZTCP_DATABASE_URL`` this process's pooled handle
        on PostgreSQL (the same alerts on every replica), else a connection to ``siem.db``, closed
        after. Raises ``siem_rules.AlertStoreUnavailable`` when the database cannot be reached."""
        if self.settings.database_url:
            with self._lock:
                shared = self.__dict__.get("_shared_alerts")
                if shared is None:
                    from server.siem import open_alerts

                    shared = self.__dict__["_shared_alerts"] = open_alerts(self.settings)
                    self._closers.append(shared.close)
            yield shared
            return
        from server.siem import open_alerts

        store = open_alerts(self.settings)
        try:
            yield store
        finally:
            store.close()

    @property
    def delivery_db_path(self) -> Path:
        from server.delivery import DB_NAME as DELIVERY_DB

        return self.home / DELIVERY_DB

    def alert_sinks(self) -> list[Any]:
        """Where alert status changes are copied besides the SIEM store (Elasticsearch when configured)."""
        from server.siem import alert_sinks

        return alert_sinks(self.settings)

    @cached_property
    def device_inventory(self) -> DeviceInventory:
        inventory = DeviceInventory(self.home / INVENTORY_FILE)
        self._closers.append(inventory.close)
        return inventory

    @cached_property
    def context_resolver(self) -> ContextResolver:
        """What the gateway believes about a request's device and context (see gateway/context.py)."""
        s = self.settings
        posture = None
        if s.device_posture_jwks and s.device_posture_issuer:
            source = (OidcKeySource.jwks_only(s.device_posture_jwks) if s.device_posture_jwks.startswith("https://")
                      else StaticKeySource(json.loads(Path(s.device_posture_jwks).read_text())))
            posture = PostureVerifier(JwtVerifier(source, s.device_posture_issuer, s.idp_audience,
                                                  leeway_seconds=s.token_leeway_seconds),
                                      max_age_seconds=s.device_posture_max_age_seconds)
        devices = DeviceAuthenticator(ca=DeviceCA.from_file(s.device_ca_file) if s.device_ca_file else None,
                                      posture=posture, inventory=self.device_inventory)
        try:
            return ContextResolver(trusted_proxies=s.trusted_proxies, zones=s.network_zones,
                                   sites=load_sites(s.sites_file) if s.sites_file else (), devices=devices,
                                   clock=self.clock)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @cached_property
    def gateway(self) -> Gateway:
        """The reference PEP over this runtime's decision point, ledger and protected tables."""
        return Gateway(point=self.point, recorder=self.recorder, ledger=self.ledger, readers=self.protected_reader,
                       decision_verifier=self.decision_verifier, blind_index_key=lambda: self.keys.blind_index,
                       clock=self.clock, classification=self.dataset_classification)

    @cached_property
    def exchange(self) -> ExchangeService:
        """The government data exchange over this runtime's PDP, ledger and protected tables."""
        from server.exchange import build_service

        return build_service(self)

    def close(self) -> None:
        for close in self._closers:
            try:
                close()
            except Exception as exc:  # shutting down: report, keep closing the rest
                log.warning("error while closing %s: %s", getattr(close, "__qualname__", close), exc)
        self._closers.clear()
