"""Every setting of the action server, read once from the environment.

Defaults work on one machine with the local generator; point GENERATOR_URL at any
OpenAI-compatible server (vLLM, say) to swap the model without code changes.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# Base URL of the OpenAI-compatible API, up to and including /v1.
GENERATOR_URL = os.environ.get("GENERATOR_URL", "http://127.0.0.1:8000/v1").rstrip("/")
GENERATOR_MODEL = os.environ.get("GENERATOR_MODEL", "SmolLM2-135M-Instruct")
# The embeddings model of that server; the knowledge index must be built with the same one.
EMBEDDING_MODEL = os.environ.get("EMBEDDING_MODEL", "all-MiniLM-L6-v2")
GENERATOR_API_KEY = os.environ.get("GENERATOR_API_KEY", "")
# Whole-request timeout for one generation. Rasa waits 300 s for an action and the
# lock store holds a conversation 60 s, so this stays well inside both.
GENERATOR_TIMEOUT_S = _float("GENERATOR_TIMEOUT_S", 30.0)
GENERATOR_CONNECT_TIMEOUT_S = _float("GENERATOR_CONNECT_TIMEOUT_S", 2.0)

LLM_MAX_TOKENS = _int("LLM_MAX_TOKENS", 64)
LLM_TEMPERATURE = _float("LLM_TEMPERATURE", 0.0)
# How many recent user and bot messages the prompt carries.
LLM_HISTORY_MESSAGES = _int("LLM_HISTORY_MESSAGES", 6)
# Longer user messages are cut before they reach the prompt (and the query embedding).
LLM_MAX_MESSAGE_CHARS = _int("LLM_MAX_MESSAGE_CHARS", 1000)
# The whole prompt stays under this many characters: the oldest history goes first
# (the generator refuses more than 8000).
LLM_MAX_PROMPT_CHARS = _int("LLM_MAX_PROMPT_CHARS", 6000)
# Slots whose values the prompt may show (comma-separated names; none by default).
LLM_PROMPT_SLOTS = [s.strip() for s in os.environ.get("LLM_PROMPT_SLOTS", "").split(",") if s.strip()]

# Grounded replies (actions/llm_reply.py, actions/knowledge.py, bench/grounding.py).
KNOWLEDGE_DIR = Path(os.environ.get("KNOWLEDGE_DIR", ROOT / "knowledge"))
# NLU examples of the intents the pages list: they help find the right page.
KNOWLEDGE_EXAMPLES = Path(os.environ.get("KNOWLEDGE_EXAMPLES", ROOT / "data" / "nlu" / "banking77.yml"))
KNOWLEDGE_INDEX = Path(os.environ.get("KNOWLEDGE_INDEX", ROOT / "build" / "knowledge" / "index.npz"))
# Passages retrieved; those of the best passage's page go into the prompt.
KNOWLEDGE_TOP_K = _int("KNOWLEDGE_TOP_K", 3)
# Below this retrieval score of the best passage the bot says it has no information.
# Tuned on the four development question sets together (bench/grounding/questions.yml and
# development-2/3/4.yml: 358 answerable, 75 unanswerable), with the pages' 70 customer
# questions each in the index: the lowest score at which 80 % of the unanswerable
# questions are refused, as before. The right page comes first and passes for 89.4 % of
# the answerable questions, and 81 % of the unanswerable ones are refused (0.56: 90.5 %
# and 71 %; 0.61: 84.9 % and 85 %). bench/results/grounding.md has the sweep.
KNOWLEDGE_MIN_SCORE = _float("KNOWLEDGE_MIN_SCORE", 0.585)
# Weight of the lexical (BM25) score in the ranking of passages (actions/knowledge.py);
# 0.1 was the best of 0–0.25 on the development questions (91.5 % right page first).
KNOWLEDGE_LEXICAL_WEIGHT = _float("KNOWLEDGE_LEXICAL_WEIGHT", 0.1)
# Weight of the intent prior in the ranking of passages (actions/knowledge.py): the
# NLU's summed confidence in the intents a page lists (the message's intent_ranking).
# 0.1 was the best of 0–1 on the development questions (95.3 % right page first, from
# 91.5 % without it). It reorders passages only: KNOWLEDGE_MIN_SCORE does not count it,
# because the NLU is confident about a banking topic for many questions the pages do
# not answer (bench/results/grounding.md has the table).
KNOWLEDGE_INTENT_WEIGHT = _float("KNOWLEDGE_INTENT_WEIGHT", 0.1)
# Candidate replies generated in one batched request (n); sampled when > 1, greedy at 1.
# 3 by the grounding benchmark (development questions): right citations 38 % (1), 83 %
# (3), 86 % (5), but 5 let more unanswerable questions through and cost 2 s more per turn.
LLM_CANDIDATES = _int("LLM_CANDIDATES", 3)
LLM_CANDIDATE_TEMPERATURE = _float("LLM_CANDIDATE_TEMPERATURE", 0.7)
# When every candidate of a round is rejected, ask again for LLM_CANDIDATES new ones
# (sampled, another seed), up to this many more rounds while the turn's deadline allows.
# Only turns whose candidates all failed pay for it (bench/results/grounding.md counts
# the answers the second round gave). 0: the honest no-answer reply at once.
LLM_RETRY_ROUNDS = _int("LLM_RETRY_ROUNDS", 1)
# OpenAI's frequency_penalty (-2..2) for the reply requests: lowers the odds of tokens a
# reply has already used, against loops. 0 leaves it out of the request. Measured at 0.5
# on the development questions (2026-12-02): the right page cited 53.8 % instead of
# 38.7 % with 1 candidate but 85.8 % instead of 87.7 % with 3 (against the last run
# without it, on another day's machine), so the default (3 candidates) stays at 0.
LLM_FREQUENCY_PENALTY = _float("LLM_FREQUENCY_PENALTY", 0.0)
# A candidate whose best cosine similarity to the prompt's passages is lower is not
# grounded and is rejected (short right answers score from about 0.3).
LLM_MIN_SUPPORT = _float("LLM_MIN_SUPPORT", 0.30)

BANK_NAME = os.environ.get("BANK_NAME", "Lakeside Bank")
