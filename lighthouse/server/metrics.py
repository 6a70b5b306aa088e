"""Prometheus metrics of one server instance, in a registry of its own.

Counters and histograms are updated by the request handlers (the append path's through ``tallies``,
plain numbers the loop adds to, exported when scraped); gauges that mirror the store (bytes
and segments on disk, head sequence, health, corruption) are read at scrape time by a collector, so
they can never drift from the store and cost nothing between scrapes. A per-app registry (never
the global one) lets several apps live in one process, as tests do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lighthouse.health import HealthState
from lighthouse.server.alerts import AlertEvaluator
from lighthouse.server.tallies import CountTally, LatencyTally
from lighthouse.store import EventStore

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE: Final[str] = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def _union_size(ranges: list[tuple[int, int]]) -> int:
    """Sequences covered by inclusive ranges that may overlap or repeat."""
    total, reach = 0, 0
    for first, last in sorted(ranges):
        first = max(first, reach + 1)
        if last >= first:
            total += last - first + 1
            reach = last
    return total


class _StoreCollector(Collector):
    """Gauges read from the store and the alert evaluator when Prometheus scrapes."""

    def __init__(
        self,
        store: EventStore,
        alerts: AlertEvaluator,
        state: Callable[[], HealthState],
        stream_subscribers: Callable[[], int],
    ) -> None:
        self._store = store
        self._alerts = alerts
        self._state = state
        self._stream_subscribers = stream_subscribers

    def collect(self) -> Iterator[Metric]:
        stats = self._store.stats()
        health = self._store.health()
        yield GaugeMetricFamily("lighthouse_events", "Events in the store's index", value=stats.events)
        yield GaugeMetricFamily("lighthouse_head_sequence", "Highest acknowledged sequence", value=stats.head_sequence)
        yield GaugeMetricFamily("lighthouse_disk_bytes", "Bytes of the log in segment files (not counting space "
                                "allocated ahead of the writes, at most 64 KiB)", value=stats.bytes_on_disk)
        yield GaugeMetricFamily("lighthouse_segments", "Segment files", value=stats.segments)
        yield GaugeMetricFamily("lighthouse_index_bytes",
                                "Bytes held by the in-memory index and its aggregate-version table",
                                value=stats.index_bytes)
        yield GaugeMetricFamily(
            "lighthouse_store_subscribers", "Live store subscriptions (streams and the bridge)", value=stats.subscribers
        )
        yield GaugeMetricFamily(
            "lighthouse_stream_subscribers", "Open WebSocket streams", value=self._stream_subscribers()
        )
        yield CounterMetricFamily("lighthouse_group_commits", "Group commits written", value=stats.groups)
        yield CounterMetricFamily("lighthouse_fsyncs", "fsync/fdatasync calls", value=stats.fsyncs)
        yield CounterMetricFamily("lighthouse_write_seconds", "Seconds spent writing and syncing appended groups",
                                  value=stats.write_seconds)
        current = self._state()
        states = GaugeMetricFamily(
            "lighthouse_health_state", "1 for the server's current health state", labels=["state"]
        )
        for state in HealthState:
            states.add_metric([state.value], 1.0 if state == current else 0.0)
        yield states
        store_states = GaugeMetricFamily(
            "lighthouse_store_health_state", "1 for the store's own health state", labels=["state"]
        )
        for state in HealthState:
            store_states.add_metric([state.value], 1.0 if state == health.state else 0.0)
        yield store_states
        yield CounterMetricFamily(
            "lighthouse_store_health_transitions", "Health transitions of the store", value=health.transitions
        )
        corrupt = [d for d in health.damage if d.get("kind") != "torn_tail" and d.get("end", 0) > d.get("start", 0)]
        yield GaugeMetricFamily(
            "lighthouse_corruption_ranges", "Damaged byte ranges found and quarantined", value=len(corrupt)
        )
        yield GaugeMetricFamily(
            "lighthouse_quarantined_bytes", "Bytes moved to quarantine", value=stats.quarantined_bytes
        )
        yield GaugeMetricFamily(
            "lighthouse_lost_sequences",
            "Sequences lost to corruption",
            value=_union_size(health.lost_sequences),
        )
        levels = GaugeMetricFamily("lighthouse_alert_level", "0 ok, 1 warning, 2 critical", labels=["alert"])
        values = GaugeMetricFamily("lighthouse_alert_value", "Current value of each trigger", labels=["alert"])
        thresholds = GaugeMetricFamily(
            "lighthouse_alert_threshold", "Configured thresholds", labels=["alert", "level"]
        )
        for name, info in self._alerts.snapshot().items():
            levels.add_metric([name], float(self._alerts.level(name)))
            if info["value"] is not None:
                values.add_metric([name], float(info["value"]))
            for level in ("warning", "critical", "warning_clear", "critical_clear"):
                thresholds.add_metric([name, level], float(info[level]))
        yield levels
        yield values
        yield thresholds


class ServerMetrics:
    """The metrics one app exposes at ``/metrics``."""

    def __init__(
        self,
        store: EventStore,
        alerts: AlertEvaluator,
        *,
        state: Callable[[], HealthState],
        stream_subscribers: Callable[[], int],
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Updated once or more per request: tallies (see ``tallies``), registered as collectors, in the order
        # the families always had at /metrics.
        self.appended = CountTally(
            "lighthouse_events_appended", "Events appended through the HTTP API (idempotent retries not counted)",
            ["event_type"],
        )
        r.register(self.appended)
        self.append_latency = LatencyTally(
            "lighthouse_append_duration_seconds", "Append request latency inside the server", "kind", _LATENCY_BUCKETS,
        )
        r.register(self.append_latency)
        self.query_latency = Histogram(
            "lighthouse_query_duration_seconds", "Read request latency inside the server", ["kind"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.errors = Counter("lighthouse_errors", "Error responses by error code", ["code"], registry=r)
        self.requests = CountTally(
            "lighthouse_http_requests", "HTTP requests by route template and status", ["method", "route", "status"],
        )
        r.register(self.requests)
        self.bridge_decisions = Counter(
            "lighthouse_bridge_decisions", "ValidationBridge decisions", ["decision", "method"], registry=r
        )
        self.stream_closed = Counter(
            "lighthouse_stream_closed", "WebSocket streams closed by the server, by reason", ["reason"], registry=r
        )
        self.stream_events = Counter("lighthouse_stream_events_sent", "Events sent over WebSocket streams", registry=r)
        self.alert_transitions = Counter(
            "lighthouse_alert_transitions", "Alert level changes", ["alert", "level"], registry=r
        )
        r.register(_StoreCollector(store, alerts, state, stream_subscribers))

    def observe_append(self, kind: str, seconds: float) -> None:
        self.append_latency.observe(kind, seconds)

    def count_appended(self, event_type: str, count: int = 1) -> None:
        self.appended.add((event_type,), count)

    def count_request(self, method: str, route: str, status: int) -> None:
        self.requests.add((method, route, str(status)))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def count_error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def snapshot(self) -> dict[str, Any]:
        """Samples as ``{name{labels}: value}``: handy for tests and the detailed health view."""
        out: dict[str, Any] = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out
