"""Prometheus metrics of the decision point (one registry per process or test app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Buckets centred on the targets: in-process decisions ~100 µs, HTTP p99 ≤ 10 ms.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class PdpMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.decisions = Counter("ztcp_decisions", "Decisions by effect", ["effect"], registry=self.registry)
        self.latency = Histogram("ztcp_decision_latency_seconds", "Decision latency inside the PDP",
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.failures = Counter("ztcp_decision_failures", "Fail-closed denies by cause", ["reason"],
                                registry=self.registry)
        self.shadow_disagreements = Counter("ztcp_shadow_disagreements",
                                            "Decisions where the shadow revision disagrees",
                                            registry=self.registry)
