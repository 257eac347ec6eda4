"""Prometheus exporter for Rasa's turn-level metrics, read from the tracker store.

Rasa 3.6 has no metrics endpoint, and patching it is not an option; every turn it
serves ends up in the `events` table, so this process reads the rows added since its
last scrape (by id) and exposes:
  rasa_user_messages_total, rasa_bot_messages_total,
  rasa_intent_confidence (histogram), rasa_fallback_turns_total,
  rasa_llm_replies_total{source}, rasa_handoffs_total,
  rasa_reply_latency_seconds (histogram: user message to first bot message).

    python -m ops exporter --port 9105
"""
from __future__ import annotations

import json
import threading
from typing import Dict, Optional

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram

from assistant import conversations


FALLBACK_INTENT = "nlu_fallback"


class TrackerStoreExporter:
    def __init__(self, url: str, registry: Optional[CollectorRegistry] = None) -> None:
        self.engine = sa.create_engine(url)
        self.registry = registry or CollectorRegistry()
        self.last_id = 0
        self._lock = threading.Lock()
        self._pending: Dict[str, float] = {}  # sender -> time of the unanswered user message
        r = self.registry
        self.user_messages = Counter("rasa_user_messages", "User messages received", registry=r)
        self.bot_messages = Counter("rasa_bot_messages", "Bot messages sent", registry=r)
        self.fallbacks = Counter("rasa_fallback_turns", "Turns below the NLU confidence threshold", registry=r)
        self.handoffs = Counter("rasa_handoffs", "Hand-offs to a person", registry=r)
        self.llm_replies = Counter("rasa_llm_replies", "LLM reply actions by what answered", ["source"], registry=r)
        self.confidence = Histogram(
            "rasa_intent_confidence", "Confidence of the top intent of each user message",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0), registry=r,
        )
        self.latency = Histogram(
            "rasa_reply_latency_seconds", "From a user message to the first bot message after it",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        )

    def start_at_end(self) -> None:
        """Count only what happens from now on (a restarted exporter does not recount)."""
        with self.engine.connect() as connection:
            if conversations.has_events(connection):
                self.last_id = conversations.last_id(connection)

    def refresh(self) -> int:
        """Read the rows added since the last call; returns how many."""
        with self._lock, self.engine.connect() as connection:
            if not conversations.has_events(connection):
                return 0
            rows = list(conversations.rows(connection, after_id=self.last_id))
            for row_id, sender, kind, timestamp, intent, action, data in rows:
                self._observe(sender, kind, timestamp or 0.0, intent, action, data)
                self.last_id = row_id
            return len(rows)

    def _observe(self, sender, kind, timestamp, intent, action, data) -> None:
        if kind == "user":
            self.user_messages.inc()
            self._pending[sender] = timestamp
            parse = (json.loads(data).get("parse_data") or {}) if data else {}
            self.fallbacks.inc(intent == FALLBACK_INTENT)
            self.confidence.observe(float((parse.get("intent") or {}).get("confidence") or 0.0))
        elif kind == "bot":
            self.bot_messages.inc()
            if sender in self._pending:
                self.latency.observe(max(0.0, timestamp - self._pending.pop(sender)))
            source = conversations.reply_source(json.loads(data)) if data else None
            if source in conversations.LLM_REPLY_SOURCES:
                self.llm_replies.labels(source.value).inc()
        elif kind == "action" and action == "utter_request_human":
            self.handoffs.inc()


def serve(url: str, host: str, port: int) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    exporter = TrackerStoreExporter(url)
    exporter.start_at_end()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path not in ("/metrics", "/health"):
                self.send_error(404)
                return
            body = b"ok"
            if self.path == "/metrics":
                exporter.refresh()
                body = generate_latest(exporter.registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST if self.path == "/metrics" else "text/plain")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer((host, port), Handler).serve_forever()
