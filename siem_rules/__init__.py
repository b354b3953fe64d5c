"""SIEM detection: Sigma rules over decisions, provenance, key and policy events; alerts; export."""

from . import triage
from .alert_backend import AlertBackend, Watermark
from .alerts import Alert, AlertStore, ElasticAlertSink
from .config import SiemConfig, load_config
from .engine import Engine, RunReport, Scheduler
from .errors import AlertNotFound, AlertStoreUnavailable, EventError, FixtureError, RuleError, SiemError
from .events import KINDS, DecisionEvent, KeyEvent, PolicyEvent
from .rulepack import AlertingRule, RulePack
from .sources import CallableSource, JsonlSource, Source
from .store import EventStore, connect

__all__ = [
    "KINDS",
    "Alert",
    "AlertBackend",
    "AlertNotFound",
    "AlertStoreUnavailable",
    "Watermark",
    "AlertStore",
    "triage",
    "AlertingRule",
    "CallableSource",
    "DecisionEvent",
    "ElasticAlertSink",
    "Engine",
    "EventError",
    "EventStore",
    "FixtureError",
    "JsonlSource",
    "KeyEvent",
    "PolicyEvent",
    "RuleError",
    "RulePack",
    "RunReport",
    "Scheduler",
    "SiemConfig",
    "SiemError",
    "Source",
    "connect",
    "load_config",
]
