"""Prometheus metrics of the action server (served on /metrics by actions.server)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

from assistant.conversations import LLM_REPLY_SOURCES

ACTION_SECONDS = Histogram(
    "action_server_action_seconds",
    "Time to run one action call, by action and HTTP status",
    ["action", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LLM_CALLS = Counter(
    "action_server_llm_calls_total",
    "Calls to the generator, by outcome (ok, timeout, http 5xx, connection, ...)",
    ["outcome"],
)
LLM_SECONDS = Histogram(
    "action_server_llm_seconds",
    "Latency of successful generator calls",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30),
)
FALLBACKS = Counter(
    "action_server_fallback_replies_total",
    "Template replies sent because the generator could not answer",
)
LLM_REPLIES = Counter(
    "action_server_llm_replies_total",
    f"Replies of action_llm_reply by source ({', '.join(map(str, LLM_REPLY_SOURCES))})",
    ["source"],
)
REJECTED_CANDIDATES = Counter(
    "action_server_llm_rejected_candidates_total",
    "Candidate LLM replies rejected by the guardrails or the grounding check, by reason",
    ["reason"],
)
RETRY_ROUNDS = Counter(
    "action_server_llm_retry_rounds_total",
    "New rounds of candidate LLM replies asked for because every candidate of the last was rejected",
)
DROPPED_SENTENCES = Counter(
    "action_server_llm_dropped_sentences_total",
    "Sentences dropped from candidate LLM replies before the checks (guardrails.repair), by reason",
    ["reason"],
)
