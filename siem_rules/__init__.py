"""SIEM detection: Sigma rules over decisions, provenance, key and policy events; alerts; export."""

from .alerts import Alert, AlertStore, ElasticAlertSink
from .config import SiemConfig, load_config
from .engine import Engine, RunReport, Scheduler
from .errors import AlertNotFound, EventError, FixtureError, RuleError, SiemError
from .events import KINDS, DecisionEvent, KeyEvent, PolicyEvent
from .rulepack import AlertingRule, RulePack
from .sources import CallableSource, JsonlSource, Source
from .store import EventStore, connect

__all__ = [
    "KINDS",
    "Alert",
    "AlertNotFound",
    "AlertStore",
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
