"""The SIEM as this installation runs it: the rule pack over ``ZTCP_HOME/siem.db``, fed by the live stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.errors import ConfigError
from server.ledger import LEDGER_FILE, ledger_from_settings
from server.settings import Settings, load_settings
from siem_rules import (
    AlertBackend,
    AlertStore,
    ElasticAlertSink,
    Engine,
    RulePack,
    Scheduler,
    Source,
    connect,
    load_config,
)

DB_NAME = "siem.db"
CONFIG_NAME = "siem.yml"


def siem_pack(settings: Settings, config_path: Path | None = None) -> RulePack:
    path = config_path or settings.ensure_home() / CONFIG_NAME
    if config_path is not None and not config_path.exists():
        raise ConfigError(f"no such config file: {config_path}")
    return RulePack(load_config(path, timezone=settings.timezone))


def pg_alert_store(url: str, evidence_cap: int = 500) -> AlertBackend:
    """The alerts of every replica in the shared database: the pool's connections get the same
    timeouts and keepalives as the other stores' (a dead server surfaces within seconds)."""
    from psycopg.conninfo import conninfo_to_dict

    from pdp.storage import PG_DEFAULTS, PG_SESSION, pg_conninfo
    from siem_rules.pg_alerts import PostgresAlertStore

    given = conninfo_to_dict(pg_conninfo(url))
    params = {k: v for k, v in PG_DEFAULTS.items() if k not in given} | {"application_name": "ztcp-siem"}
    if "options" not in given:
        params["options"] = PG_SESSION
    return PostgresAlertStore(pg_conninfo(url), evidence_cap=evidence_cap, params=params)


def open_alerts(settings: Settings, evidence_cap: int = 500) -> AlertBackend:
    """The alert store of this installation (the caller closes it): PostgreSQL with
    ``ZTCP_DATABASE_URL`` (alerts, their history and the rules' watermarks shared by every replica),
    else the SQLite driver over ``ZTCP_HOME/siem.db``. ``verify_history()`` and ``prune()`` are
    what ``ztcp audit verify --all`` and retention call.

    Raises ``siem_rules.AlertStoreUnavailable`` when the database cannot be reached."""
    if settings.database_url:
        return pg_alert_store(settings.database_url, evidence_cap)
    return AlertStore(connect(settings.ensure_home() / DB_NAME), evidence_cap)


def alert_sinks(settings: Settings) -> list[Any]:
    if not settings.es_url:
        return []
    from elasticsearch import Elasticsearch

    api_key = settings.es_api_key.get_secret_value() if settings.es_api_key else None
    return [ElasticAlertSink(Elasticsearch(settings.es_url, api_key=api_key))]


def make_engine(settings: Settings, config_path: Path | None = None) -> Engine:
    """The engine over ``ZTCP_HOME/siem.db`` with lists from ``ZTCP_HOME/siem.yml`` (if present)."""
    pack = siem_pack(settings, config_path)
    conn = connect(settings.ensure_home() / DB_NAME)
    try:
        # With replicas, alerts, their history and the watermarks live in the shared database.
        shared = pg_alert_store(settings.database_url, pack.config.evidence_cap) if settings.database_url else None
    except BaseException:
        conn.close()
        raise
    return Engine(conn, pack, sinks=alert_sinks(settings), alerts=shared)


class LiveSources:
    """Adapters for the live stores (decision log, provenance ledger, key and policy audit), found
    anew on each call: a store created after start-up (the first key event, a first policy change)
    joins the next SIEM run. Each adapter is built once and kept (it holds the store's reader).

    Each is a ``siem_rules.CallableSource(name, kind, fetch)`` around that store's "events after
    cursor" query. Stores that do not exist yet are skipped (nothing recorded there yet).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Source] = {}

    def __call__(self) -> list[Source]:
        home = self.settings.ensure_home()
        import keymgmt

        # A ledger in PostgreSQL (ZTCP_DATABASE_URL) is always there to read: no file to wait for.
        ledger = None if self.settings.database_url else home / LEDGER_FILE
        stores = (("decisions", home / "decisions.db", self._decisions),
                  ("policy-admin", home / "policy.db", self._policy),
                  ("key-audit", keymgmt.default_audit_path(home), self._keys),
                  ("provenance", ledger, self._provenance),
                  ("alert-admin", home / DB_NAME, self._alerts))
        # In PostgreSQL: always there to read, whether or not this home has the files.
        shared = {"decisions", "policy-admin", "alert-admin"} if self.settings.database_url else set()
        for name, path, make in stores:
            if name not in self._made and (name in shared or path is None or path.exists()):
                self._made[name] = make(path)  # type: ignore[arg-type]  # None only to _provenance, which takes it
        return [self._made[name] for name, *_ in stores if name in self._made]

    def _decisions(self, path: Path) -> Source:
        from pdp.decision_log import DecisionLog
        from siem_rules import CallableSource

        source = self.settings.database_url or path  # the decision log of every replica, or this home's
        return CallableSource("decisions", "decision", DecisionLog.reader(source).events_after)

    def _policy(self, path: Path) -> Source:
        from server.runtime import open_revision_store
        from siem_rules import CallableSource

        return CallableSource("policy-admin", "policy", open_revision_store(self.settings).events_after)

    @staticmethod
    def _keys(path: Path) -> Source:
        import keymgmt
        from siem_rules import CallableSource

        return CallableSource("key-audit", "key", keymgmt.KeyAuditLog(path).events_after)

    def _alerts(self, path: Path) -> Source:
        from siem_rules import CallableSource

        # The SOC's own triage, read back from the alert store on a connection of its own (every
        # replica's triage, with ZTCP_DATABASE_URL).
        return CallableSource("alert-admin", "alert", open_alerts(self.settings).events_after)

    def _provenance(self, path: Path | None) -> Source:
        from siem_rules import CallableSource

        return CallableSource("provenance", "provenance", ledger_from_settings(self.settings).events_after)


def live_sources(settings: Settings) -> list[Source]:
    """The live stores that exist now (see :class:`LiveSources`)."""
    return LiveSources(settings)()


def make_scheduler(
    settings: Settings | None = None, interval: float = 60.0, sources: list[Source] | None = None,
    after_run: Any = None, gate: Any = None,
) -> Scheduler:
    """For `ztcp serve`: ``s = make_scheduler(settings); s.start()`` … ``s.stop()``."""
    settings = settings or load_settings()
    srcs = LiveSources(settings) if sources is None else sources
    config = settings.ensure_home() / CONFIG_NAME

    def config_version() -> tuple[int, int] | None:
        try:
            st = config.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    from server.log_upkeep import LogUpkeep

    upkeep = LogUpkeep(settings)

    def after() -> None:
        # Runs on the leader only (the scheduler's gate): sign the logs' heads, apply retention
        # when due, then wake delivery. Upkeep failures are logged by it and never stop delivery.
        upkeep()
        if after_run is not None:
            after_run()

    return Scheduler(lambda: make_engine(settings), srcs, interval, config_version=config_version,
                     after_run=after, gate=gate)


# ---- helpers -----------------------------------------------------------------------------------
