"""Export the pack to Elasticsearch with pySigma's elasticsearch backends.

Targets: ``esql`` / ``eql`` / ``lucene`` (one query file per rule) and ``kibana-ndjson`` (an
Elastic Security detection-rule import file; risk score and severity from the rule level).
A rule a target cannot express is reported, not silently dropped: Lucene has no correlations,
ES|QL no ``temporal_ordered`` / ``value_sum``, EQL only sequences. Note that the ES|QL backend
buckets correlation windows (``date_trunc``) where the embedded engine slides them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.backends.elasticsearch import EqlBackend, ESQLBackend, LuceneBackend
from sigma.collection import SigmaCollection
from sigma.conversion.base import TextQueryBackend
from sigma.exceptions import SigmaError

from .errors import ExportUnsupported, SiemError
from .pipeline import ES_INDEX, elastic_pipeline
from .rulepack import AlertingRule, RulePack

TARGETS = ("esql", "eql", "lucene", "kibana-ndjson")


class _Offline:
    """Elastic's threat mapping downloads MITRE ATT&CK at conversion time; exports must work
    offline, so ATT&CK tags are kept as plain ``tags`` and ``threat`` is left empty."""

    def finalize_output_threat_model(self, tags: Any) -> list[Any]:
        return []


class OfflineLucene(_Offline, LuceneBackend):
    pass


class OfflineEsql(_Offline, ESQLBackend):
    pass


class OfflineEql(_Offline, EqlBackend):
    pass


_QUERY_BACKENDS: dict[str, tuple[type[TextQueryBackend], str]] = {
    "esql": (OfflineEsql, ".esql"), "eql": (OfflineEql, ".eql"), "lucene": (OfflineLucene, ".lucene")}
# For the Kibana file: the first backend able to express the rule.
_NDJSON_BACKENDS: tuple[type[TextQueryBackend], ...] = (OfflineLucene, OfflineEsql, OfflineEql)


@dataclass
class ExportReport:
    target: str
    directory: str
    exported: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _collection(pack: RulePack, rule: AlertingRule) -> SigmaCollection:
    coll = SigmaCollection.from_dicts([d for f, d in pack.documents if f == rule.file])
    coll.resolve_rule_references()
    return coll


def convert(pack: RulePack, rule: AlertingRule, backend_cls: type[TextQueryBackend], fmt: str = "default") -> list[Any]:
    """Convert one alerting rule (with the detections it references) for one backend."""
    if rule.analytic:
        raise ExportUnsupported("a Python analytic, not a Sigma rule")
    import inspect

    kwargs: dict[str, Any] = {}
    if "index_names" in inspect.signature(backend_cls).parameters:  # the class's: its __init__ without self
        kwargs["index_names"] = [ES_INDEX[k] for k in rule.kinds]
    backend = backend_cls(elastic_pipeline(pack.config), **kwargs)
    out = backend.convert(_collection(pack, rule), fmt)
    if not out:
        raise ExportUnsupported("backend produced no query")
    return list(out)


def export(pack: RulePack, target: str, out_dir: Path, rules: list[AlertingRule] | None = None) -> ExportReport:
    if target not in TARGETS:
        raise SiemError(f"target must be one of {', '.join(TARGETS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(target, str(out_dir))
    rules = rules or pack.rules
    if target == "kibana-ndjson":
        lines = []
        for rule in rules:
            reasons = []
            for backend in _NDJSON_BACKENDS:
                try:
                    objs = convert(pack, rule, backend, "siem_rule_ndjson")
                except (ExportUnsupported, NotImplementedError, SigmaError) as exc:  # pySigma uses NIE too
                    reasons.append(f"{backend.__mro__[2].__name__}: {exc}")
                    continue
                for obj in objs:
                    obj["name"] = rule.title
                    obj.setdefault("tags", []).extend(["ztcp", f"ztcp.rule.{rule.name}"])
                    lines.append(json.dumps(obj, sort_keys=True))
                report.exported.append(rule.name)
                break
            else:
                report.skipped[rule.name] = "; ".join(reasons)
        path = out_dir / "ztcp-detection-rules.ndjson"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        report.files.append(str(path))
    else:
        backend_cls, ext = _QUERY_BACKENDS[target]
        for rule in rules:
            try:
                queries = convert(pack, rule, backend_cls)
            except (ExportUnsupported, NotImplementedError, SigmaError) as exc:  # pySigma uses NIE too
                report.skipped[rule.name] = str(exc)
                continue
            path = out_dir / f"{rule.name}{ext}"
            header = f"// {rule.title} ({rule.level}) id={rule.id}\n"
            path.write_text(header + "\n".join(str(q) for q in queries) + "\n", encoding="utf-8")
            report.exported.append(rule.name)
            report.files.append(str(path))
    (out_dir / f"export-{target}.json").write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    return report
