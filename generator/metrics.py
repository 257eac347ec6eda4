"""Prometheus metrics: requests by route and status, latency, time to first token,
tokens in and out, queue depth and the batch size of the decode loop.

A registry per app (not the global one) so tests can build several apps in one process.
The HTTP side is plain ASGI middleware so a streamed reply is timed to its last byte;
the batch figures are read from the chat engine's scheduler when /metrics is scraped.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .scheduler import BATCH_BUCKETS

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120)
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)


def _scheduler(service):
    return getattr(service.chat_engine, "scheduler", None)


class _SchedulerCollector:
    """Cumulative figures of the chat engine's decode loop, read at scrape time."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        scheduler = _scheduler(self.service)
        if scheduler is None:
            return
        stats = scheduler.stats
        buckets, running = [], 0
        for bound, count in zip([*map(str, BATCH_BUCKETS), "+Inf"], stats.batch_buckets):
            running += count
            buckets.append((bound, running))
        batch = HistogramMetricFamily("generator_batch_size", "Rows (sequences) per decode step")
        batch.add_metric([], buckets, sum_value=stats.batch_rows_sum)
        yield batch
        steps = CounterMetricFamily("generator_decode_steps", "Decode steps of the batching loop")
        steps.add_metric([], stats.steps)
        yield steps
        prompt = CounterMetricFamily("generator_prompt_tokens_computed",
                                     "Prompt tokens prefilled (the rest came from the prefix cache)")
        prompt.add_metric([], stats.prefilled_tokens)
        yield prompt
        prefix = CounterMetricFamily("generator_prefix_cache_lookups", "Shared-prefix cache lookups",
                                     labels=["result"])
        prefix.add_metric(["hit"], scheduler.prefixes.hits)
        prefix.add_metric(["miss"], scheduler.prefixes.misses)
        yield prefix


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
        queue.labels("chat").set_function(lambda: service.chat_pending)
        queue.labels("embeddings").set_function(lambda: service.embedding_worker.pending)
        waiting = Gauge("generator_chat_waiting", "Chat requests waiting for a place in the batch",
                        registry=self.registry)
        waiting.set_function(lambda: getattr(_scheduler(service), "waiting", 0))
        rows = Gauge("generator_batch_rows", "Sequences in the running batch", registry=self.registry)
        rows.set_function(lambda: getattr(_scheduler(service), "batch_rows", 0))
        self.ttft = Histogram(
            "generator_time_to_first_token_seconds", "From a chat request's arrival to its first token",
            buckets=TTFT_BUCKETS, registry=self.registry,
        )
        self.chat_latency = Histogram(
            "generator_chat_latency_seconds", "From a chat request's arrival to its last token",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.tokens = Counter("generator_tokens", "Tokens of answered chat requests", ["kind"],
                              registry=self.registry)
        self.registry.register(_SchedulerCollector(service))

    def observe_chat(self, result, seconds: float) -> None:
        self.chat_latency.observe(seconds)
        self.tokens.labels("prompt").inc(result.prompt_tokens)
        self.tokens.labels("completion").inc(sum(c.completion_tokens for c in result.completions))

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
