"""The bridge's own metrics, named and described by the catalogue (measurement
``alert_bridge``), in a registry of their own that /metrics exposes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from computewatch import catalog

__all__ = ["BridgeMetrics"]


def _counter(field: str, registry: CollectorRegistry) -> Counter:
    m = catalog.metric(f"alert_bridge.{field}")
    return Counter(m.prometheus.removesuffix("_total"), m.help, m.labels, registry=registry)


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = _counter("notifications_received_total", r)
        self.rejected = _counter("requests_rejected_total", r)
        self.delivered = _counter("messages_delivered_total", r)
        self.failures = _counter("delivery_failures_total", r)
        self.retries = _counter("delivery_retries_total", r)
        self.dead_lettered = _counter("messages_dead_lettered_total", r)
        self.dead_letter_errors = _counter("dead_letter_errors_total", r)
        self.truncated = _counter("messages_truncated_total", r)
        self.rate_limit_waits = _counter("rate_limit_waits_total", r)
        depth = catalog.metric("alert_bridge.queue_depth")
        self.queue_depth = Gauge(depth.prometheus, depth.help, depth.labels, registry=r)
