"""pySigma processing pipelines: placeholders from configuration, our field names to each target's.

* ``sqlite_pipeline``: ``%list%`` placeholders → configured values; Sigma fields (the events' JSON
  paths) → the flat columns of the embedded store (events.FIELDS), per logsource service.
* ``elastic_pipeline``: the same placeholders; event time → ``@timestamp``; the derived local-time
  fields → ``ztcp.local.*`` (to be filled by an ingest pipeline); fields naming part of an object
  → its path in the documents the producers index (``actor`` → ``actor.id``); the index per service.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigma.processing.conditions import IncludeFieldCondition, LogsourceCondition, RuleProcessingCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    FieldMappingTransformation,
    SetStateTransformation,
    ValueListPlaceholderTransformation,
)
from sigma.processing.transformations.base import StringValueTransformation
from sigma.types import SigmaString, SpecialChars

from .config import SiemConfig
from .events import FIELDS, KINDS, LIST_FIELDS, SERVICE_OF_KIND, TIME_FIELD

ES_INDEX = {
    "decision": "ztcp-decisions*",
    "provenance": "ztcp-provenance*",
    "key": "ztcp-keys*",
    "policy": "ztcp-policy*",
    "alert": "ztcp-alerts*",
}


def _placeholders(config: SiemConfig) -> ProcessingItem:
    return ProcessingItem(ValueListPlaceholderTransformation(), identifier="ztcp_lists")


@dataclass
class ListMembershipTransformation(StringValueTransformation):
    """``fields: bank_account`` on an array field means "has the element", as in Elasticsearch.

    The embedded store keeps arrays as ``|a|b|``, so the value becomes ``*|bank_account|*``.
    Strings only: other values (numbers, null, …) are left as they are.
    """

    def apply_string_value(self, field: str | None, val: SigmaString) -> SigmaString:
        out = val
        if not val.startswith(SpecialChars.WILDCARD_MULTI):
            out = SpecialChars.WILDCARD_MULTI + ("|" + out)
        if not val.endswith(SpecialChars.WILDCARD_MULTI):
            out = out + "|" + SpecialChars.WILDCARD_MULTI
        return out


def sqlite_pipeline(config: SiemConfig) -> ProcessingPipeline:
    items = [
        _placeholders(config),
        ProcessingItem(
            ListMembershipTransformation(),
            identifier="ztcp_list_membership",
            field_name_conditions=[IncludeFieldCondition(fields=sorted(LIST_FIELDS))],
        ),
    ]
    for kind in KINDS:
        # pySigma's mapping type (dict is invariant): keys may be None, values one or several fields.
        mapping: dict[str | None, str | list[str]] = {c.field: c.column for c in FIELDS[kind]}
        items.append(
            ProcessingItem(
                FieldMappingTransformation(mapping),
                identifier=f"ztcp_sqlite_{kind}",
                rule_conditions=[LogsourceCondition(product="ztcp", service=SERVICE_OF_KIND[kind])],
            )
        )
    return ProcessingPipeline(name="ztcp-sqlite", priority=20, items=items, vars=config.placeholder_vars())


def elastic_pipeline(config: SiemConfig) -> ProcessingPipeline:
    items = [_placeholders(config)]
    for kind in KINDS:
        mapping: dict[str | None, str | list[str]] = {TIME_FIELD[kind]: "@timestamp"}
        mapping.update({c.field: f"ztcp.{c.field}" for c in FIELDS[kind] if c.derived})
        # Fields naming a part of the stored document (``actor`` → ``actor.id``, ``bundles.revision`` →
        # ``bundles.ztcp.revision``). ``changed`` becomes ``fields``: every rule using it also selects
        # ``type: pii.update``, the only events on which the two are the same.
        mapping.update({c.field: c.path for c in FIELDS[kind] if c.path})

        def cond(kind: str = kind) -> list[RuleProcessingCondition]:  # one instance per item (pySigma binds it)
            return [LogsourceCondition(product="ztcp", service=SERVICE_OF_KIND[kind])]

        items.append(
            ProcessingItem(FieldMappingTransformation(mapping), identifier=f"ztcp_es_{kind}", rule_conditions=cond())
        )
        items.append(
            ProcessingItem(
                SetStateTransformation("index", ES_INDEX[kind]),
                identifier=f"ztcp_es_index_{kind}",
                rule_conditions=cond(),
            )
        )
    return ProcessingPipeline(name="ztcp-elastic", priority=20, items=items, vars=config.placeholder_vars())
