"""Prometheus metrics: requests by route and status, latency, queue depth.

A registry per app (not the global one) so tests can build several apps in one process.
Implemented as plain ASGI middleware so a streamed reply is timed to its last byte.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "generator_requests", "HTTP requests by route and status code",
            ["route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "generator_request_duration_seconds", "Time until the last byte of the response",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        queue = Gauge(
            "generator_queue_depth", "Requests running or waiting, per worker",
            ["worker"], registry=self.registry,
        )
        for worker in (service.chat_worker, service.embedding_worker):
            queue.labels(worker.name).set_function(lambda w=worker: w.pending)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)
