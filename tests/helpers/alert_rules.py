"""The smallest rule an alert store accepts (what ``AlertBackend.merge`` reads of a rule), for tests
that raise alerts without running the rule pack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Rule:
    id: str = "r-1"
    name: str = "many_reads"
    title: str = "Many reads"
    rule_type: str = "detection"
    level: str = "high"
