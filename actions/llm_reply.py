"""Answer open-ended and low-confidence turns with the language model, grounded in the
knowledge base (knowledge/*.md, indexed by actions.knowledge).

One turn:
  1. Retrieve: embed the customer's last message (redacted, capped) through the
     generator's /v1/embeddings and take the KNOWLEDGE_TOP_K best passages (ranked
     with the NLU's intent ranking of that message as a prior, when the tracker has
     one: actions/knowledge.py). If the best passage's score is below
     KNOWLEDGE_MIN_SCORE the bot says it has no information on that and offers a
     person (source "no_knowledge"); nothing is generated.
  2. Generate: one page answers, the best passage's: the prompt
     (conversation.build_prompt) holds that passage and the page's other sections
     among the top k, the recent conversation and the quoted question.
     LLM_CANDIDATES replies come from ONE request (OpenAI `n`; the generator decodes
     them together in its batch), sampled at LLM_CANDIDATE_TEMPERATURE when there are
     several, greedy when there is one; LLM_FREQUENCY_PENALTY (when not 0) is sent
     as OpenAI's frequency_penalty.
  3. Select: each candidate is tidied (speaker label, an unfinished last sentence) and
     repaired (guardrails.repair drops its sentences that state a number the passages
     lack, and repeats of a sentence), then rejected if guardrails.check_reply names a
     reason (length, a loop, system prompt leak, personal data, URL, account claim, a
     number not in the passages).
     The survivors are embedded in one more /v1/embeddings call; a candidate's
     support is its best cosine similarity to a passage of the prompt, and one below
     LLM_MIN_SUPPORT is rejected as ungrounded (one above ECHO_SIMILARITY to the
     question only repeats it, and is rejected too). The best-supported candidate
     wins (ties: the earlier one). If none is left, a new round asks for
     LLM_CANDIDATES more (sampled, another seed), up to LLM_RETRY_ROUNDS times, while
     the turn's deadline leaves at least as long as the last round took. If no round
     gives one, the bot says it has no answer it is sure of and offers a person
     (source "no_safe_answer").
  4. Cite: the reply ends with "Source: <page title>" of the page the prompt held;
     metadata.sources lists its page id.

If the generator fails or the whole turn takes longer than GENERATOR_TIMEOUT_S, the
customer gets the polite template utter_llm_fallback (source "fallback").
"""
from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Text

import numpy as np
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import guardrails, knowledge, metrics, settings
from actions.clients import generator
from actions.conversation import build_prompt, last_user_text, system_prompt

logger = logging.getLogger(__name__)

FALLBACK_RESPONSE = "utter_llm_fallback"
HUMAN_BUTTON = {"title": "Talk to a person", "payload": "/request_human"}
NO_KNOWLEDGE_TEXT = (
    "I'm sorry, I don't have information about that, and I'd rather not guess. "
    "Would you like me to connect you with a person from our support team?"
)
NO_SAFE_ANSWER_TEXT = (
    "I'm sorry, I couldn't find an answer to that I'm confident is correct. "
    "Would you like me to connect you with a person from our support team?"
)

# A candidate this close to the question only repeats it.
ECHO_SIMILARITY = 0.9

_index: Optional[knowledge.KnowledgeIndex] = None


def load_index() -> knowledge.KnowledgeIndex:
    """The knowledge index, read once per process; KnowledgeError if missing or stale."""
    global _index
    if _index is None:
        index, why = knowledge.load_current()
        if index is None:
            raise knowledge.KnowledgeError(
                f"knowledge index not usable: {why}; build it with "
                "`.venvs/generator/bin/python -m actions.knowledge build` (make setup does)"
            )
        _index = index
    return _index


def last_intent_ranking(events: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The NLU's intent ranking of the last user message (parse_data.intent_ranking); [] when
    it has none (then retrieval ranks without the intent prior)."""
    for event in reversed(events):
        if event.get("event") == "user":
            ranking = (event.get("parse_data") or {}).get("intent_ranking")
            return [entry for entry in ranking if isinstance(entry, dict)] if isinstance(ranking, list) else []
    return []


@dataclass
class Candidate:
    text: str
    rejected: Optional[str] = None  # the reason, or None
    dropped: List[str] = field(default_factory=list)  # why sentences were dropped (guardrails.repair)
    support: float = 0.0  # best cosine similarity to a passage of the prompt
    passage: Optional[knowledge.Passage] = None  # that passage


@dataclass
class Answer:
    source: str  # llm, no_knowledge or no_safe_answer
    text: str
    sources: List[str] = field(default_factory=list)  # cited page ids
    hits: List[knowledge.Hit] = field(default_factory=list)
    candidates: List[Candidate] = field(default_factory=list)
    model: Optional[str] = None
    completion_tokens: int = 0  # over all rounds
    latency_ms: int = 0  # time spent waiting for the generator
    rounds: int = 0  # generation requests made (a new round only when every candidate was rejected)

    @property
    def rejected(self) -> List[str]:
        return [c.rejected for c in self.candidates if c.rejected]

    @property
    def dropped(self) -> List[str]:
        return [reason for c in self.candidates for reason in c.dropped]


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise generator.GeneratorError("timeout")
        return left

    def room(self) -> float:
        """Seconds left (negative when past), without raising."""
        return self.end - time.monotonic()


def select(candidates: List[Candidate], hits: Sequence[knowledge.Hit], vectors: np.ndarray,
           passage_vectors: np.ndarray, query_vector: np.ndarray) -> Optional[Candidate]:
    """Score the unrejected candidates (vectors: theirs, in order) against the passages; the best or None."""
    alive = [c for c in candidates if c.rejected is None]
    if not alive:
        return None
    vectors = knowledge.unit(vectors)
    support = vectors @ passage_vectors.T  # [candidates, passages]
    echo = vectors @ knowledge.unit(query_vector)
    for candidate, row, same in zip(alive, support, echo):
        best = int(np.argmax(row))
        candidate.support, candidate.passage = float(row[best]), hits[best].passage
        if same > ECHO_SIMILARITY:
            candidate.rejected = "echo"
        elif candidate.support < settings.LLM_MIN_SUPPORT:
            candidate.rejected = "ungrounded"
    grounded = [c for c in alive if c.rejected is None]
    return max(grounded, key=lambda c: c.support) if grounded else None


async def answer(
    events: Sequence[Dict[str, Any]],
    slots: Optional[Mapping[str, Any]] = None,
    *,
    candidates: Optional[int] = None,
    timeout_s: Optional[float] = None,
    base_url: Optional[str] = None,
) -> Answer:
    """The grounded answer to the conversation's last user message; GeneratorError on failure.
    `candidates` and `timeout_s` default to LLM_CANDIDATES and GENERATOR_TIMEOUT_S."""
    index = load_index()
    deadline = _Deadline(settings.GENERATOR_TIMEOUT_S if timeout_s is None else timeout_s)
    candidates = settings.LLM_CANDIDATES if candidates is None else candidates
    question = last_user_text(events)
    if not question:
        raise generator.GeneratorError("no user text")
    waited = 0

    query = await generator.embed([question], base_url=base_url, timeout_s=deadline.left())
    waited += query.latency_ms
    hits = index.search(query.vectors[0], settings.KNOWLEDGE_TOP_K, text=question,
                        intent_ranking=last_intent_ranking(events))
    if not hits or hits[0].score < settings.KNOWLEDGE_MIN_SCORE:
        return Answer("no_knowledge", NO_KNOWLEDGE_TEXT, hits=hits, latency_ms=waited)

    # One page answers: the best passage's, with its other sections among the top k.
    used = [hit for hit in hits if hit.passage.page_id == hits[0].passage.page_id]
    passages = [hit.passage for hit in used]
    messages = build_prompt(events, passages, slots)
    n = max(1, candidates)
    result = Answer("no_safe_answer", NO_SAFE_ANSWER_TEXT, hits=hits)
    sources = [p.text for p in passages]
    seen = set()
    chosen, round_seconds = None, 0.0
    for round_ in range(1 + max(0, settings.LLM_RETRY_ROUNDS)):
        if round_ and deadline.room() < round_seconds:
            break  # no time for another round: the honest reply
        round_started = time.monotonic()
        sampled = n > 1 or round_ > 0  # a greedy round again would give the same reply
        reply = await generator.chat(
            messages,
            n=n,
            temperature=settings.LLM_CANDIDATE_TEMPERATURE if sampled else settings.LLM_TEMPERATURE,
            # Sampled candidates repeat for the same question: replies are reproducible.
            seed=zlib.crc32(question.encode()) + round_ if sampled else None,
            frequency_penalty=settings.LLM_FREQUENCY_PENALTY,
            base_url=base_url,
            timeout_s=deadline.left(),
        )
        waited += reply.latency_ms
        result.model, result.rounds = reply.model, round_ + 1
        result.completion_tokens += reply.completion_tokens or 0
        fresh = []
        for text in reply.texts:
            text, dropped = guardrails.repair(guardrails.tidy(text), sources)
            if text in seen:  # identical samples: score once
                continue
            seen.add(text)
            fresh.append(Candidate(text, guardrails.check_reply(text, sources, system_prompt()), dropped))
        result.candidates += fresh
        alive = [c.text for c in fresh if c.rejected is None]
        vectors = np.zeros((0, index.vectors.shape[1]), np.float32)
        if alive:
            embedded = await generator.embed(alive, base_url=base_url, timeout_s=deadline.left())
            waited += embedded.latency_ms
            vectors = embedded.vectors
        chosen = select(fresh, used, vectors, index.vectors_of(used), query.vectors[0])
        if chosen is not None:
            break
        round_seconds = time.monotonic() - round_started
    result.latency_ms = waited
    if chosen is not None:
        assert chosen.passage is not None
        result.source = "llm"
        result.sources = [chosen.passage.page_id]
        result.text = f"{chosen.text}\n\nSource: {chosen.passage.title}"
    return result


class ActionLLMReply(Action):
    """Answer from the knowledge base through the LLM; on any failure, send a polite template.

    The bot message carries `source` in its metadata ("llm", "no_knowledge",
    "no_safe_answer" or "fallback"), which the tracker store keeps, so analytics and
    tests can tell them apart; `sources` lists the cited page ids (only "llm" replies
    cite: Rasa drops empty metadata values).
    """

    def name(self) -> Text:
        return "action_llm_reply"

    async def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Dict[Text, Any],
    ) -> List[Dict[Text, Any]]:
        started = time.monotonic()
        error_reason = None
        if last_user_text(tracker.events) is None:  # no user text to answer (e.g. an empty message)
            error_reason = "no user text"
        else:
            try:
                result = await answer(tracker.events, tracker.slots)
            except generator.GeneratorError as error:
                logger.warning("LLM reply failed for %s: %s", tracker.sender_id, error.reason)
                metrics.LLM_CALLS.labels(error.reason.split(":")[0]).inc()
                error_reason = error.reason
            except knowledge.KnowledgeError as error:
                logger.error("LLM reply failed for %s: %s", tracker.sender_id, error)
                error_reason = "knowledge index"
        if error_reason is not None:
            metrics.FALLBACKS.inc()
            metrics.LLM_REPLIES.labels("fallback").inc()
            dispatcher.utter_message(response=FALLBACK_RESPONSE, source="fallback", llm_error=error_reason)
            return []
        metrics.LLM_CALLS.labels("ok").inc()
        metrics.LLM_SECONDS.observe(result.latency_ms / 1000)
        metrics.LLM_REPLIES.labels(result.source).inc()
        for reason in result.rejected:
            metrics.REJECTED_CANDIDATES.labels(reason).inc()
        for reason in result.dropped:
            metrics.DROPPED_SENTENCES.labels(reason).inc()
        if result.rounds > 1:
            metrics.RETRY_ROUNDS.inc(result.rounds - 1)
        retrieval = [
            {"page": h.passage.page_id, "section": h.passage.heading, "score": round(h.score, 3),
             "lexical": round(h.lexical, 3), "intent": round(h.intent, 3)}
            for h in result.hits
        ]
        logger.info(
            "LLM reply for %s: %s %s (best passage %.3f, rejected %s, sentences dropped %s) in %.2f s",
            tracker.sender_id, result.source, result.sources, result.hits[0].score if result.hits else 0.0,
            result.rejected, result.dropped, time.monotonic() - started,
        )
        if result.source == "no_knowledge":
            dispatcher.utter_message(
                text=result.text, buttons=[HUMAN_BUTTON], source="no_knowledge", retrieval=retrieval
            )
            return []
        llm = {
            "model": result.model,
            "completion_tokens": result.completion_tokens,
            "latency_ms": result.latency_ms,
            "candidates": len(result.candidates),
            "rounds": result.rounds,
            "rejected": result.rejected,
            "dropped": result.dropped,
        }
        if result.source == "llm":
            dispatcher.utter_message(
                text=result.text, source="llm", sources=result.sources, llm=llm, retrieval=retrieval
            )
        else:
            dispatcher.utter_message(
                text=result.text, buttons=[HUMAN_BUTTON], source="no_safe_answer", llm=llm,
                retrieval=retrieval,
            )
        return []
