"""Prometheus metrics on a registry of our own (one per app, so tests do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "trdbot_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.request_latency = Histogram(
            "trdbot_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.cycle_duration = Histogram(
            "trdbot_cycle_seconds", "Duration of one trading cycle", registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.orders_placed = Counter(
            "trdbot_orders_placed_total", "Orders sent to the exchange", ["type", "outcome"], registry=self.registry
        )
        self.signals = Counter(
            "trdbot_signals_total", "Analyst signals by outcome", ["signal", "outcome"], registry=self.registry
        )

        self._signal_children: dict[tuple[str, str], Counter] = {}

    def count_signal(self, signal: str, outcome: str) -> None:
        """signals{signal, outcome} += 1; the labelled child is looked up once (labels() costs more than inc()).
        StrEnum members may be passed as they are: they hash, compare and print as their values."""
        child = self._signal_children.get((signal, outcome))
        if child is None:
            child = self._signal_children[(signal, outcome)] = self.signals.labels(signal=signal, outcome=outcome)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
