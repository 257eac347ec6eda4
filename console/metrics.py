"""Prometheus metrics of the handoffs, served by the console at /metrics.

The gauges are read from the bank database at each scrape (so several console
processes report the same numbers); the histograms count what this process saw.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)

WAITING = Gauge("lakeside_handoffs_waiting", "conversations waiting for a person, not yet claimed",
                registry=REGISTRY)
CLAIMED = Gauge("lakeside_handoffs_claimed", "handed-off conversations an agent holds", registry=REGISTRY)
FIRST_REPLY_SECONDS = Histogram(
    "lakeside_handoff_first_reply_seconds", "from the customer's request for a person to the first agent reply",
    buckets=BUCKETS, registry=REGISTRY)
DURATION_SECONDS = Histogram(
    "lakeside_handoff_duration_seconds", "from the request for a person to the end of the handoff",
    ["outcome"], buckets=BUCKETS, registry=REGISTRY)
AGENT_MESSAGES = Counter("lakeside_agent_messages_total", "replies agents sent to customers", registry=REGISTRY)
LOGINS = Counter("lakeside_console_logins_total", "console sign-ins by result", ["result"], registry=REGISTRY)
