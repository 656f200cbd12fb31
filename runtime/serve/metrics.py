"""`/metrics` in the Prometheus text format: requests, errors, queue depth, batch sizes, latency.

Each app has its own registry, so two servers in one process (the tests) do not share counts.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "edgekiln_requests", "Inference requests received", ["model", "endpoint"], registry=self.registry
        )
        self.errors = Counter(
            "edgekiln_request_errors",
            "Inference requests answered with an error",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgekiln_request_latency_seconds",
            "Time from request to answer",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        sizes = sorted({1, *(2**i for i in range(1, max_batch.bit_length() + 1) if 2**i <= max_batch), max_batch})
        self.batch_rows = Histogram(
            "edgekiln_batch_rows",
            "Rows per model call (after dynamic batching)",
            ["model"],
            buckets=sizes,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "edgekiln_queue_depth", "Requests waiting or running", ["model"], registry=self.registry
        )

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(model).set_function(depth)

    def batch_observer(self, model: str) -> Callable[[int], None]:
        histogram = self.batch_rows.labels(model)
        return histogram.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
