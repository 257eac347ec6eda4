"""Every setting of the action server, read once from the environment.

Defaults work on one machine with the local generator; point GENERATOR_URL at any
OpenAI-compatible server (vLLM, say) to swap the model without code changes.
"""
from __future__ import annotations

import math
from pathlib import Path

from assistant.config import SettingsError, _env, _integer, _number, _text

_ENV = _env(None)  # read through the core's typed readers: a bad value stops with one line

ROOT = Path(__file__).resolve().parent.parent


def _float(name: str, default: float) -> float:
    return _number(_ENV, name, default, minimum=-math.inf)


def _int(name: str, default: int) -> int:
    return _integer(_ENV, name, default, minimum=-(2 ** 31))


def _str(name: str, default: str = "") -> str:
    return _text(_ENV, name, default)


# Base URL of the OpenAI-compatible API, up to and including /v1.
GENERATOR_URL = _str("GENERATOR_URL", "http://127.0.0.1:8000/v1").rstrip("/")
GENERATOR_MODEL = _str("GENERATOR_MODEL", "SmolLM2-135M-Instruct")
GENERATOR_API_KEY = _str("GENERATOR_API_KEY", "")
# Embeddings (retrieval, the candidates' checks) from their own OpenAI-compatible server,
# so chat can go to vLLM while embeddings stay on the CPU generator. Empty: GENERATOR_URL
# (resolved at each call, assistant/generator_client.py).
EMBEDDINGS_URL = _str("EMBEDDINGS_URL", "").rstrip("/")
# The embeddings model of that server; the knowledge index must be built with the same one.
# EMBEDDING_MODEL, the setting's old name, still counts when EMBEDDINGS_MODEL is not set.
EMBEDDINGS_MODEL = _str("EMBEDDINGS_MODEL") or _str("EMBEDDING_MODEL") or "all-MiniLM-L6-v2"
EMBEDDING_MODEL = EMBEDDINGS_MODEL  # the old name, for code that still reads it
EMBEDDINGS_API_KEY = _str("EMBEDDINGS_API_KEY", GENERATOR_API_KEY)
# At start the action server checks that GENERATOR_URL serves GENERATOR_MODEL and
# EMBEDDINGS_URL serves EMBEDDINGS_MODEL (GET /v1/models), waiting up to this many seconds
# for servers that are still starting, and exits with the reason if not (actions/server.py).
GENERATOR_START_WAIT_S = _float("GENERATOR_START_WAIT_S", 240.0)
# 0 skips that check (tests and benchmarks that run the action server with no generator).
GENERATOR_START_CHECK = _int("GENERATOR_START_CHECK", 1)
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
LLM_PROMPT_SLOTS = [s.strip() for s in _str("LLM_PROMPT_SLOTS", "").split(",") if s.strip()]

# Answers from the knowledge base (actions/llm_reply.py, assistant/answers.py, assistant/knowledge.py,
# bench/answers.py).
KNOWLEDGE_DIR = Path(_str("KNOWLEDGE_DIR", str(ROOT / "knowledge")))
# NLU examples of the intents the pages list: they help find the right page.
KNOWLEDGE_EXAMPLES = Path(_str("KNOWLEDGE_EXAMPLES", str(ROOT / "data" / "nlu" / "banking77.yml")))
KNOWLEDGE_INDEX = Path(_str("KNOWLEDGE_INDEX", str(ROOT / "build" / "knowledge" / "index.npz")))
# Passages retrieved; those of the best passage's page go into the prompt.
KNOWLEDGE_TOP_K = _int("KNOWLEDGE_TOP_K", 3)
# Below this retrieval score of the best passage the bot says it has no information
# (one of the answerability gate's tests, assistant/answers.py). Chosen with the other
# ANSWER_* gate settings on bench/answers/development.yml (bench/results/answers-development.md).
KNOWLEDGE_MIN_SCORE = _float("KNOWLEDGE_MIN_SCORE", 0.5)
# Weight of the lexical (BM25) score in the ranking of passages (assistant/knowledge.py);
# 0.1 was the best of 0–0.25 on the earlier citation benchmark's development questions
# (91.5 % right page first).
KNOWLEDGE_LEXICAL_WEIGHT = _float("KNOWLEDGE_LEXICAL_WEIGHT", 0.1)
# Weight of the intent prior in the ranking of passages (assistant/knowledge.py): the
# NLU's summed confidence in the intents a page lists (the message's intent_ranking).
# 0.1 was the best of 0–1 on the citation benchmark's questions (95.3 % right page first, from
# 91.5 % without it). It reorders passages only: KNOWLEDGE_MIN_SCORE does not count it,
# because the NLU is confident about a banking topic for many questions the pages do
# not answer.
KNOWLEDGE_INTENT_WEIGHT = _float("KNOWLEDGE_INTENT_WEIGHT", 0.1)
# Generated candidates per answer, from one batched request (n; sampled when > 1, greedy
# at 1). They compete with the extractive answer and replace it only when at least as
# faithful (actions/llm_reply.py, `faithful`). 0 (the default): extractive answers only;
# with SmolLM2-135M no generated candidate was both faithful and right often enough to
# pay for the seconds it costs (bench/results/answers-development.md). With a stronger
# model behind GENERATOR_URL, set 3.
LLM_CANDIDATES = _int("LLM_CANDIDATES", 0)
LLM_CANDIDATE_TEMPERATURE = _float("LLM_CANDIDATE_TEMPERATURE", 0.7)
# When every candidate of a round is rejected, ask again for LLM_CANDIDATES new ones
# (sampled, another seed), up to this many more rounds while the turn's deadline allows.
# Only turns whose candidates all failed pay for it. 0: the extractive answer at once.
LLM_RETRY_ROUNDS = _int("LLM_RETRY_ROUNDS", 1)
# OpenAI's frequency_penalty (-2..2) for the reply requests: lowers the odds of tokens a
# reply has already used, against loops. 0 leaves it out of the request. Measured at 0.5
# on the development questions (2026-12-02): the right page cited 53.8 % instead of
# 38.7 % with 1 candidate but 85.8 % instead of 87.7 % with 3 (against the last run
# without it, on another day's machine), so the default (3 candidates) stays at 0.
LLM_FREQUENCY_PENALTY = _float("LLM_FREQUENCY_PENALTY", 0.0)
# A generated candidate must say what the extractive answer says: its cosine similarity
# to it must reach this (besides stating the same figures and no others).
LLM_MIN_SUPPORT = _float("LLM_MIN_SUPPORT", 0.8)
# ... and at most this share of its content words may be words neither the page nor the
# question uses (a claim of its own).
LLM_MAX_NEW_WORDS = _float("LLM_MAX_NEW_WORDS", 0.1)

# Extractive answers (assistant/answers.py): the page sentences that answer the question.
# Passages retrieved as candidates for the answer's sentences.
ANSWER_TOP_K = _int("ANSWER_TOP_K", 6)
# Sentence ranking: cosine similarity + these weights times the share of the question's
# content words the sentence contains, a bonus when it states the kind of fact asked for
# (amount, duration, place in the app), and its page's retrieval score minus the best page's.
ANSWER_OVERLAP_WEIGHT = _float("ANSWER_OVERLAP_WEIGHT", 0.3)
# Weight of a sentence's closest `facts:` question (knowledge pages' front matter) in its rank.
ANSWER_FACT_WEIGHT = _float("ANSWER_FACT_WEIGHT", 1.0)
ANSWER_KIND_WEIGHT = _float("ANSWER_KIND_WEIGHT", 0.1)
# ... plus this weight times its section's cosine similarity to the question.
ANSWER_SECTION_WEIGHT = _float("ANSWER_SECTION_WEIGHT", 0.7)
# ... and for a place in the app ("Card > Freeze") when the question asks how or where.
ANSWER_PLACE_WEIGHT = _float("ANSWER_PLACE_WEIGHT", 0.1)
ANSWER_PAGE_WEIGHT = _float("ANSWER_PAGE_WEIGHT", 1.0)
# A sentence already sent in this conversation scores this much less (follow-ups ask for more).
ANSWER_REPEAT_PENALTY = _float("ANSWER_REPEAT_PENALTY", 0.1)
# A follow-up's earlier answer's page scores this much more.
ANSWER_FOLLOWUP_PAGE_BONUS = _float("ANSWER_FOLLOWUP_PAGE_BONUS", 0.1)
# Another sentence of the best one's page joins the reply when it scores within this margin.
ANSWER_SECOND_MARGIN = _float("ANSWER_SECOND_MARGIN", 0.3)
# When the chosen sentences state none of the kind of fact asked for (a place in the app,
# an amount, a time, a count, a rate), the best sentence of the page that states it joins
# the reply if it scores within this margin of the best.
ANSWER_KIND_MARGIN = _float("ANSWER_KIND_MARGIN", 0.5)
# At most this many sentences (of the best one's page) make the reply.
ANSWER_MAX_SENTENCES = _int("ANSWER_MAX_SENTENCES", 4)
# The pages cover a question when its best page holds at least this IDF-weighted share of
# the question's content words (and retrieval reaches KNOWLEDGE_MIN_SCORE).
ANSWER_MIN_COVERAGE = _float("ANSWER_MIN_COVERAGE", 0.5)
# Refuse when the question asks for an amount, time, count or rate and the chosen
# sentences state none (1) or not (0).
ANSWER_KIND_GATE = _int("ANSWER_KIND_GATE", 1)
# ... stated within this many words of one of the question's own words (0: anywhere).
ANSWER_KIND_WINDOW = _int("ANSWER_KIND_WINDOW", 12)
# ... and in a sentence at least this similar to the question (not only one of its neighbours)
ANSWER_KIND_MIN_SIMILARITY = _float("ANSWER_KIND_MIN_SIMILARITY", 0.35)
# A short message without a pronoun continues the last question unless one of its words is
# on at most this share of the pages (a topic of its own: "apple pay?").
ANSWER_TOPIC_MAX_SHARE = _float("ANSWER_TOPIC_MAX_SHARE", 0.3)
# ... and when the best sentence's cosine similarity to the question reaches this
# (not for follow-ups, whose words lean on the earlier question).
ANSWER_MIN_SIMILARITY = _float("ANSWER_MIN_SIMILARITY", 0.4)
# Weight of a question word that no page uses, in the coverage (a word on one page: 3.0).
ANSWER_UNKNOWN_WORD_WEIGHT = _float("ANSWER_UNKNOWN_WORD_WEIGHT", 2.0)
# The answerability gate: `learned` (a logistic model over the retrieval, sentence, coverage
# and NLU figures, fitted on the development question sets by `python -m bench.gate` into
# ANSWER_GATE_FILE; refit it after changing the pages or the question sets), `rules` (the
# thresholds KNOWLEDGE_MIN_SCORE, ANSWER_MIN_SIMILARITY, ANSWER_MIN_COVERAGE, ANSWER_KIND_GATE,
# for a knowledge base with no question sets yet), or `off` (answer everything: for fitting).
ANSWER_GATE = _str("ANSWER_GATE", "learned")
if ANSWER_GATE not in ("learned", "rules", "off"):
    raise SettingsError(f"ANSWER_GATE must be one of learned, rules, off, not {ANSWER_GATE!r}")
ANSWER_GATE_FILE = Path(_str("ANSWER_GATE_FILE", str(ROOT / "assistant" / "answer_gate.json")))
# A message of at most this many words that refers back ("is there anything for him?") and
# that the pages cannot answer on its own is read again as a follow-up of the last question.
ANSWER_CONTEXT_MAX_WORDS = _int("ANSWER_CONTEXT_MAX_WORDS", 20)
# When the gate refuses a question whose two best pages score within this margin of each
# other, the customer is asked which one they mean (buttons with the two page titles, and a
# person) instead of getting the plain "I don't know"; 0 turns it off. Only when the learned
# gate's estimate reaches ANSWER_CLARIFY_MIN_PROBABILITY (far below it, neither page is
# likely to hold the answer). On the five development sets (2026-12-05): 20 of 46 refused
# answerable questions asked instead, the right page among the two for 19; 4 of 189
# unanswerable ones.
ANSWER_CLARIFY_MARGIN = _float("ANSWER_CLARIFY_MARGIN", 0.06)
ANSWER_CLARIFY_MIN_PROBABILITY = _float("ANSWER_CLARIFY_MIN_PROBABILITY", 0.3)

BANK_NAME = _str("BANK_NAME", "Lakeside Bank")
