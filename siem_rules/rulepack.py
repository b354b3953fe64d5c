"""Loading the Sigma rule pack, checking it, and compiling its detections to SQLite predicates.

Each file in ``siem_rules/rules/*.yml`` holds exactly one *alerting* rule (a detection, or a
correlation with the detections it references) so a file, its fixtures and its alerts line up.
Detections are compiled by pySigma's sqlite backend through our processing pipeline; the engine
evaluates correlations itself from the parsed correlation rule (see correlate.py for why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationCondition, SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaString

from .config import SiemConfig
from .errors import RuleError
from .events import FIELDS, KIND_OF_SERVICE, SERVICE_OF_KIND, column_of
from .pipeline import sqlite_pipeline

RULES_DIR = Path(__file__).parent / "rules"
FIXTURES_DIR = RULES_DIR / "fixtures"
REQUIRED_META = ("id", "title", "description", "level", "tags", "falsepositives")
LEVELS = ("informational", "low", "medium", "high", "critical")


class PredicateBackend(sqliteBackend):
    """pySigma's sqlite backend, returning the WHERE predicate instead of ``SELECT * FROM logs``.

    The engine wraps predicates in its own parametrised, range-restricted queries. Lists of plain
    values become ``IN (…)`` (one index-friendly test) instead of a chain of ``LIKE`` tests, which
    the backend otherwise emits for any value containing ``_`` (a LIKE wildcard).
    """

    convert_or_as_in = True
    in_expressions_allow_wildcards = False

    def convert_condition_as_in_expression(self, cond: Any, state: Any) -> Any:
        # The backend's value escaping is for LIKE patterns (``_`` → ``\_``); an IN list needs
        # plain SQL literals. Columns are COLLATE NOCASE, so IN stays case-insensitive like Sigma.
        field = cond.args[0].field
        values = []
        for arg in cond.args:
            v = arg.value
            values.append("'" + str(v).replace("'", "''") + "'" if isinstance(v, SigmaString) else str(v))
        return f"{self.escape_and_quote_field(field)} IN ({', '.join(values)})"

    def finalize_query_default(self, rule: Any, query: str, index: int, state: Any) -> Any:
        if isinstance(rule, SigmaCorrelationRule):  # not used by the engine
            return query
        return query


def parse_duration(text: str | int | float) -> int:
    if isinstance(text, int | float):
        return int(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return int(float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"bad duration {text!r} (use e.g. 30s, 10m, 1h, 7d)") from None


@dataclass
class Detection:
    """A base Sigma rule compiled for one event kind."""

    name: str
    kind: str
    predicate: str
    sigma: SigmaRule

    @property
    def service(self) -> str:
        """The logsource service of the rule (``kind`` was derived from it when the rule was loaded)."""
        return SERVICE_OF_KIND[self.kind]


@dataclass
class Correlation:
    type: str
    timespan: int
    group_by: list[str]  # Sigma field names (or aliases)
    refs: list[tuple[Detection, dict[str, str]]]  # detection, alias -> its own field
    op: str | None
    count: float | None
    fieldref: str | None


@dataclass
class AlertingRule:
    id: str
    name: str
    title: str
    description: str
    level: str
    tags: list[str]
    falsepositives: list[str]
    file: Path
    logsource: list[str]  # services involved
    detection: Detection | None = None
    correlation: Correlation | None = None
    suppress_by: list[str] = field(default_factory=list)
    suppress_seconds: int = 0
    analytic: str | None = None  # python analytics (analytics.py) share this model

    @property
    def fixture_path(self) -> Path:
        return FIXTURES_DIR / f"{self.name}.yml"

    @property
    def rule_type(self) -> str:
        if self.analytic:
            return "analytic"
        return self.correlation.type if self.correlation else "event"

    @property
    def kinds(self) -> list[str]:
        if self.detection:
            return [self.detection.kind]
        if self.correlation:
            return sorted({d.kind for d, _ in self.correlation.refs})
        return [KIND_OF_SERVICE[s] for s in self.logsource]


def _fields_of(det: SigmaDetection | SigmaDetectionItem, out: set[str]) -> None:
    if isinstance(det, SigmaDetectionItem):
        if det.field:
            out.add(det.field)
        return
    for item in det.detection_items:
        _fields_of(item, out)


def read_documents(files: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for f in files:
        try:
            for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
                if doc is not None:
                    if not isinstance(doc, dict):
                        raise RuleError(f.name, "each YAML document must be a mapping")
                    docs.append((f, doc))
        except yaml.YAMLError as exc:
            raise RuleError(f.name, f"not valid YAML: {exc}") from None
    return docs


class RulePack:
    """The rule pack, compiled against one configuration."""

    def __init__(
        self, config: SiemConfig | None = None, rules_dir: Path | None = None, files: list[Path] | None = None
    ) -> None:
        self.config = config or SiemConfig()
        self.rules_dir = rules_dir or RULES_DIR
        self.files = files if files is not None else sorted(self.rules_dir.glob("*.yml"))
        self.documents = read_documents(self.files)
        self.rules: list[AlertingRule] = self._compile()
        from .analytics import ANALYTICS  # python analytics live beside the Sigma rules

        self.rules.extend(a.rule() for a in ANALYTICS)

    def collection(self) -> SigmaCollection:
        """A fresh pySigma collection of the whole pack (for export backends, which mutate rules)."""
        try:
            coll = SigmaCollection.from_dicts([d for _, d in self.documents])
            coll.resolve_rule_references()
        except SigmaError as exc:
            raise RuleError("pack", str(exc)) from None
        return coll

    def find(self, key: str) -> AlertingRule:
        for r in self.rules:
            if key in (r.id, r.name, r.title, r.file.stem):
                return r
        raise RuleError(key, "no such rule (see `ztcp siem list`)")

    # ---- compilation ----

    def _compile(self) -> list[AlertingRule]:
        coll = self.collection()
        file_of: dict[int, Path] = {}
        by_obj = {}
        for (path, _doc), rule in zip(self.documents, coll.rules, strict=True):
            file_of[id(rule)] = path
            by_obj[id(rule)] = rule
        backend = PredicateBackend(sqlite_pipeline(self.config))
        detections: dict[int, Detection] = {}
        for rule in coll.rules:
            if isinstance(rule, SigmaRule):
                detections[id(rule)] = self._detection(rule, file_of[id(rule)], backend)
        out: list[AlertingRule] = []
        seen_ids: set[str] = set()
        per_file: dict[Path, int] = {}
        for rule in coll.rules:
            if not rule._output:
                continue  # a detection only referenced by a correlation
            path = file_of[id(rule)]
            meta = self._meta(rule, path)
            if meta["id"] in seen_ids:
                raise RuleError(path.name, f"duplicate rule id {meta['id']}")
            seen_ids.add(meta["id"])
            per_file[path] = per_file.get(path, 0) + 1
            if isinstance(rule, SigmaCorrelationRule):
                corr = self._correlation(rule, path, detections)
                services = sorted({d.service for d, _ in corr.refs})
                out.append(AlertingRule(**meta, file=path, logsource=services, correlation=corr))
            else:
                det = detections[id(rule)]
                sup = rule.custom_attributes.get("alert_suppression") or {}
                group = list(sup.get("group_by") or [])
                for f in group:
                    if column_of(det.kind, f) is None:
                        raise RuleError(path.name, f"alert_suppression.group_by field {f!r} is not a {det.kind} field")
                try:
                    secs = parse_duration(sup.get("duration", 0)) if sup else 0
                except ValueError as exc:
                    raise RuleError(path.name, str(exc)) from None
                out.append(
                    AlertingRule(
                        **meta,
                        file=path,
                        logsource=[det.service],
                        detection=det,
                        suppress_by=group,
                        suppress_seconds=secs,
                    )
                )
        for path, n in per_file.items():
            if n != 1:
                raise RuleError(path.name, f"holds {n} alerting rules; one per file")
        return out

    def _meta(self, rule: Any, path: Path) -> dict[str, Any]:
        raw = next(d for p, d in self.documents if p == path and str(d.get("id")) == str(rule.id))
        missing = [k for k in REQUIRED_META if not raw.get(k)]
        if missing:
            raise RuleError(path.name, f"missing {', '.join(missing)}")
        level = rule.level.name.lower() if rule.level else None
        if level not in LEVELS:
            raise RuleError(path.name, f"level must be one of {', '.join(LEVELS)}")
        return {
            "id": str(rule.id),
            "name": path.stem,  # the file names the alerting rule (and its fixtures)
            "title": rule.title,
            "description": " ".join(str(rule.description).split()),
            "level": level,
            "tags": [str(t) for t in rule.tags],
            "falsepositives": list(rule.falsepositives),
        }

    def _detection(self, rule: SigmaRule, path: Path, backend: PredicateBackend) -> Detection:
        ls = rule.logsource
        if ls.product != "ztcp" or ls.service not in KIND_OF_SERVICE:
            raise RuleError(path.name, "logsource must be product: ztcp with service: " + " | ".join(KIND_OF_SERVICE))
        kind = KIND_OF_SERVICE[ls.service]
        used: set[str] = set()
        for det in rule.detection.detections.values():
            _fields_of(det, used)
        known = {c.field for c in FIELDS[kind]}
        unknown = sorted(used - known)
        if unknown:
            raise RuleError(path.name, f"unknown {ls.service} field(s): {', '.join(unknown)}")
        try:
            backend.convert_rule(rule)
            queries = rule.get_conversion_result()
        except SigmaError as exc:
            raise RuleError(path.name, f"cannot compile: {exc}") from None
        if not queries or not all(isinstance(q, str) for q in queries):
            raise RuleError(path.name, "compiled to no predicate")
        predicate = " OR ".join(f"({q})" for q in queries)
        return Detection(name=rule.name or str(rule.id), kind=kind, predicate=predicate, sigma=rule)

    def _correlation(self, rule: SigmaCorrelationRule, path: Path, detections: dict[int, Detection]) -> Correlation:
        refs = []
        group = list(rule.group_by or [])
        for ref in rule.rules or []:
            target = ref.rule
            if not isinstance(target, SigmaRule):
                raise RuleError(path.name, "correlations of correlations are not supported")
            det = detections[id(target)]
            mapping = {}
            for alias in rule.aliases:
                for r, f in alias.mapping.items():
                    if r.reference in (ref.reference, target.name, str(target.id)):
                        mapping[alias.alias] = f
            for g in group:
                f = mapping.get(g, g)
                if column_of(det.kind, f) is None:
                    raise RuleError(path.name, f"group-by field {g!r} is not a {det.kind} field")
            refs.append((det, mapping))
        cond = rule.condition
        op: str | None = None
        count: float | None = None
        fieldref: str | None = None
        if isinstance(cond, SigmaCorrelationCondition):
            op, count = cond.op.name.lower(), float(cond.count)
            if isinstance(cond.fieldref, list):
                if cond.fieldref:
                    raise RuleError(path.name, "condition.field must be one field")
                # An empty list names no field, like no ``field`` (the engine only tests it for truth).
            else:
                fieldref = cond.fieldref
        elif cond is not None:
            raise RuleError(path.name, "extended (boolean) correlation conditions are not supported")
        kind = rule.type.name.lower()
        if fieldref:
            for det, mapping in refs:
                if column_of(det.kind, mapping.get(fieldref, fieldref)) is None:
                    raise RuleError(path.name, f"condition field {fieldref!r} is not a {det.kind} field")
        if kind not in ("event_count", "value_count", "value_sum", "temporal", "temporal_ordered"):
            raise RuleError(path.name, f"correlation type {kind} is not supported by the engine")
        if kind == "temporal_ordered" and op is not None and (op, count) != ("gte", float(len(refs))):
            raise RuleError(path.name, "temporal_ordered supports only 'all rules in order'")
        return Correlation(
            type=kind,
            timespan=int(rule.timespan.seconds),
            group_by=group,
            refs=refs,
            op=op,
            count=count,
            fieldref=fieldref,
        )
