"""The answer to a customer's message, without Rasa: the extractive answer from the
knowledge pages (assistant/answers.py) or the honest "I don't know", with optional
generated candidates that must be at least as faithful (`faithful`). The rasa-sdk action
(actions/llm_reply.py) sends what `answer` returns.
"""
from __future__ import annotations

import logging
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from assistant import answers, generator_client as generator, guardrails, knowledge, settings
from assistant.prompt import build_prompt, last_user_text, system_prompt

logger = logging.getLogger(__name__)

FALLBACK_RESPONSE = "utter_llm_fallback"
HUMAN_BUTTON = {"title": "Talk to a person", "payload": "/request_human"}
NO_KNOWLEDGE_TEXT = (
    "I'm sorry, I don't have information about that, and I'd rather not guess. "
    "Would you like me to connect you with a person from our support team?"
)
CLARIFY_TEXT = (
    "I'm not sure which of these you mean, and I'd rather not guess. "
    "Is your question about one of them, or shall I connect you with a person?"
)
CHOOSE_INTENT = "choose_topic"  # the clarifying buttons' payload: /choose_topic{"topic_page": "<page id>"}
CHOOSE_ENTITY = "topic_page"


def choose_button(page_id: str, title: str) -> Dict[str, str]:
    """A clarifying question's button: the page's title; its payload asks again, on that page."""
    return {"title": title, "payload": f'/{CHOOSE_INTENT}{{"{CHOOSE_ENTITY}": "{page_id}"}}'}

_index: Optional[knowledge.KnowledgeIndex] = None


def load_index() -> knowledge.KnowledgeIndex:
    """The knowledge index, read once per process; KnowledgeError if missing or stale."""
    global _index
    if _index is None:
        index, why = knowledge.load_current()
        if index is None:
            raise knowledge.KnowledgeError(
                f"knowledge index not usable: {why}; build it with "
                "`.venvs/generator/bin/python -m assistant.knowledge build` (make setup does)"
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
    source: str  # knowledge (extractive), llm (generated), no_knowledge
    text: str
    sources: List[str] = field(default_factory=list)  # cited page ids
    hits: List[knowledge.Hit] = field(default_factory=list)
    candidates: List[Candidate] = field(default_factory=list)
    model: Optional[str] = None
    completion_tokens: int = 0  # over all rounds
    latency_ms: int = 0  # time spent waiting for the generator
    rounds: int = 0  # generation requests made (a new round only when every candidate was rejected)
    extract: Optional[answers.Extract] = None  # the extractive answer and the gate's figures
    followup: bool = False  # the message continued an earlier question
    errors: List[str] = field(default_factory=list)  # generator errors the extractive answer survived
    choices: List[Tuple[str, str]] = field(default_factory=list)  # clarify: (page id, title) to choose from

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


_sentences: Optional[answers.SentenceIndex] = None


def cite(text: str, title: Optional[str]) -> str:
    """The answer with its source on a line of its own. One newline, not a blank line:
    Rasa's socket.io channel sends each paragraph as a message of its own, which would
    show the source as a second bubble live and as one after a reload."""
    return f"{text}\nSource: {title}"


def load_sentences() -> answers.SentenceIndex:
    """The index's sentences and page vocabularies, built once per process."""
    global _sentences
    if _sentences is None:
        index = load_index()
        questions: Dict[str, List[str]] = {}
        for text, page, from_nlu in knowledge.load_examples(settings.KNOWLEDGE_DIR, settings.KNOWLEDGE_EXAMPLES):
            if not from_nlu:
                questions.setdefault(page, []).append(text)
        for text, page, _ in knowledge.load_facts(settings.KNOWLEDGE_DIR):
            questions.setdefault(page, []).append(text)
        _sentences = answers.SentenceIndex(index, questions)
    return _sentences


async def answer(
    events: Sequence[Dict[str, Any]],
    slots: Optional[Mapping[str, Any]] = None,
    *,
    candidates: Optional[int] = None,
    timeout_s: Optional[float] = None,
    base_url: Optional[str] = None,
    page: Optional[str] = None,
) -> Answer:
    """The answer to the conversation's last user message; GeneratorError on failure.
    `candidates` (generated ones; 0: extractive only) and `timeout_s` default to
    LLM_CANDIDATES and GENERATOR_TIMEOUT_S. `page`: the page the customer chose after a
    clarifying question; the earlier question is answered from that page only."""
    sentences = load_sentences()
    deadline = _Deadline(settings.GENERATOR_TIMEOUT_S if timeout_s is None else timeout_s)
    candidates = settings.LLM_CANDIDATES if candidates is None else candidates
    if page is not None:
        return await _answer_on_page(events, page, deadline, base_url)
    question = last_user_text(events)
    if not question:
        raise generator.GeneratorError("no user text")
    followup = answers.followup_context(events, sentences.is_topic)
    hits, extract, waited = await _extract(events, question, followup, deadline, base_url)
    # "is it free?" with nothing before it that "it" could be: whatever sentence scores best
    # answers a question the customer did not ask
    if extract.answerable and followup is None and answers.is_bare_reference(question, sentences.is_topic):
        extract.answerable, extract.sentences, extract.why = False, [], "no subject"
    fragment = answers.is_elliptical(question, lambda word: sentences.is_topic(word, ()))
    if not extract.answerable and followup is None:
        # a message that leans on the conversation but could not be answered alone
        # ("my son is 15 though, is there anything for him?") is read again in context
        context = answers.followup_context(events, sentences.is_topic, loose=True)
        if context is not None:
            hits2, extract2, waited2 = await _extract(events, question, context, deadline, base_url)
            waited += waited2
            if extract2.answerable:
                followup, hits, extract = context, hits2, extract2
    if not extract.answerable:
        # a fragment with nothing before it ("does it cost anything?") names no topic to choose between
        choices = clarify_choices(hits, extract) if followup is None and not fragment else []
        if choices:
            return Answer("clarify", CLARIFY_TEXT, hits=hits, latency_ms=waited, extract=extract, choices=choices)
        return Answer("no_knowledge", NO_KNOWLEDGE_TEXT, hits=hits, latency_ms=waited, extract=extract,
                      followup=followup is not None)
    result = Answer("knowledge", cite(extract.text, extract.title), sources=[extract.page_id or ""],
                    hits=hits, latency_ms=waited, extract=extract, followup=followup is not None)
    if candidates > 0:
        try:
            await generate(result, events, slots, hits, question, candidates, deadline, base_url)
        except generator.GeneratorError as error:  # the extractive answer stands
            logger.warning("generated candidates failed (%s): the extractive answer is sent", error.reason)
            result.errors.append(error.reason.split(":")[0])
    return result


def clarify_choices(hits: Sequence[knowledge.Hit], extract: answers.Extract) -> List[Tuple[str, str]]:
    """The two pages to ask about when the gate refused a question that two pages answer
    about equally well (ANSWER_CLARIFY_MARGIN), else []."""
    if settings.ANSWER_CLARIFY_MARGIN <= 0 or extract.probability is None \
            or extract.probability < settings.ANSWER_CLARIFY_MIN_PROBABILITY:
        return []
    best: Dict[str, float] = {}
    for hit in hits:
        best.setdefault(hit.passage.page_id, hit.score)
    pages = list(best.items())[:2]
    if len(pages) < 2 or pages[0][1] - pages[1][1] > settings.ANSWER_CLARIFY_MARGIN:
        return []
    titles = load_index().titles
    return [(page, titles[page]) for page, _ in pages]


def earlier_question(events: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The customer's last typed message (not a button's /payload): the question a
    clarifying question asked about."""
    for event in reversed(events):
        if event.get("event") == "user" and (event.get("text") or "").strip() \
                and not (event.get("text") or "").lstrip().startswith("/"):
            return dict(event)
    return None


async def _answer_on_page(events: Sequence[Dict[str, Any]], page: str, deadline: "_Deadline",
                          base_url: Optional[str]) -> Answer:
    """The earlier question answered from the page the customer chose (the gate still
    decides whether that page states the answer)."""
    index, sentences = load_index(), load_sentences()
    if page not in index.titles:
        raise generator.GeneratorError(f"no such page: {page[:40]}")
    asked = earlier_question(events)
    if asked is None:
        raise generator.GeneratorError("no user text")
    question = guardrails.cap(guardrails.redact(asked["text"]), settings.LLM_MAX_MESSAGE_CHARS)
    search_text = f"{question} {answers.place_words(question)}".strip()
    query = await generator.embed([search_text], base_url=base_url, timeout_s=deadline.left())
    ranking = answers.event_ranking(asked)
    hits = [hit for hit in index.search(query.vectors[0], len(index.passages), text=search_text,
                                        intent_ranking=ranking) if hit.passage.page_id == page]
    hits = hits[:max(settings.KNOWLEDGE_TOP_K, settings.ANSWER_TOP_K)]
    confidence = (ranking[:1] or [{}])[0].get("confidence")
    extract = answers.extract(sentences, query.vectors[0], question, hits,
                              nlu_confidence=float(confidence) if isinstance(confidence, (int, float)) else 0.0)
    if not extract.answerable:
        return Answer("no_knowledge", NO_KNOWLEDGE_TEXT, hits=hits, latency_ms=query.latency_ms, extract=extract)
    return Answer("knowledge", cite(extract.text, extract.title), sources=[extract.page_id or ""], hits=hits,
                  latency_ms=query.latency_ms, extract=extract)


async def _extract(events: Sequence[Dict[str, Any]], question: str, followup: Optional[answers.FollowUp],
                   deadline: "_Deadline", base_url: Optional[str]):
    """Retrieval and the extractive answer for the message, alone or as a follow-up of
    the earlier question: (hits, extract, milliseconds waited for the embeddings)."""
    index, sentences = load_index(), load_sentences()
    # the earlier question is read from the events as typed: redacted and capped like the message
    earlier = guardrails.cap(guardrails.redact(followup.question), settings.LLM_MAX_MESSAGE_CHARS) if followup else ""
    query_text = f"{earlier} {question}" if followup else question
    # "Spain" is "elsewhere in the EEA" in the pages' words: searched, not counted as covered
    search_text = f"{query_text} {answers.place_words(question)}".strip()
    ranking = followup.intent_ranking if followup else last_intent_ranking(events)
    query = await generator.embed([search_text, question] if followup else [search_text], base_url=base_url,
                                  timeout_s=deadline.left())
    hits = index.search(query.vectors[0], max(settings.KNOWLEDGE_TOP_K, settings.ANSWER_TOP_K), text=search_text,
                        intent_ranking=ranking)
    confidence = (last_intent_ranking(events)[:1] or [{}])[0].get("confidence")
    extract = answers.extract(sentences, query.vectors[0], query_text, hits, focus=question, followup=followup,
                              focus_query=query.vectors[1] if followup else None,
                              nlu_confidence=float(confidence) if isinstance(confidence, (int, float)) else 0.0)
    return hits, extract, query.latency_ms


async def generate(result: Answer, events: Sequence[Dict[str, Any]], slots: Optional[Mapping[str, Any]],
                   hits: Sequence[knowledge.Hit], question: str, n: int, deadline: "_Deadline",
                   base_url: Optional[str]) -> None:
    """Generated candidates against the extractive answer: N from one request, phrased from
    the answer's page; one replaces the extractive answer only when it passes the
    guardrails and is at least as faithful (`faithful`). Changes `result` in place."""
    assert result.extract is not None
    page = result.extract.page_id
    used = [hit for hit in hits if hit.passage.page_id == page] or list(hits[:1])
    passages = [hit.passage for hit in used]
    messages = build_prompt(events, passages, slots)
    sources = [p.text for p in passages]
    seen: set = set()
    for round_ in range(1 + max(0, settings.LLM_RETRY_ROUNDS)):
        if round_ and deadline.room() < 1.0:
            break
        sampled = n > 1 or round_ > 0
        reply = await generator.chat(
            messages,
            n=n,
            temperature=settings.LLM_CANDIDATE_TEMPERATURE if sampled else settings.LLM_TEMPERATURE,
            seed=zlib.crc32(question.encode()) + round_ if sampled else None,
            frequency_penalty=settings.LLM_FREQUENCY_PENALTY,
            base_url=base_url,
            timeout_s=deadline.left(),
        )
        result.latency_ms += reply.latency_ms
        result.model, result.rounds = reply.model, round_ + 1
        result.completion_tokens += reply.completion_tokens or 0
        fresh = []
        for text in reply.texts:
            text, dropped = guardrails.repair(guardrails.tidy(text), sources)
            if text in seen:
                continue
            seen.add(text)
            fresh.append(Candidate(text, guardrails.check_reply(text, sources, system_prompt()), dropped))
        result.candidates += fresh
        alive = [c for c in fresh if c.rejected is None]
        if alive:
            embedded = await generator.embed([c.text for c in alive] + [result.extract.text], base_url=base_url,
                                             timeout_s=deadline.left())
            result.latency_ms += embedded.latency_ms
            vectors = knowledge.unit(embedded.vectors)
            for candidate, vector in zip(alive, vectors[:-1]):
                candidate.support = float(vector @ vectors[-1])
                candidate.rejected = faithful(candidate, result.extract.text, sources + [question])
        winners = [c for c in alive if c.rejected is None]
        if winners:
            best = max(winners, key=lambda c: c.support)
            best.passage = used[0].passage
            result.source = "llm"
            result.text = cite(best.text, result.extract.title)
            return
    return


# A place in the app as the pages write it: "Card > Freeze", "Home > Add money > Auto top-up".
_APP_PATH = re.compile(r"[A-Z][\w'-]*(?: [\w'-]+){0,3}(?: > [A-Z][\w'-]*(?: [\w'-]+){0,3})+")


def faithful(candidate: Candidate, extractive: str, sources: Sequence[str] = ()) -> Optional[str]:
    """Why a generated candidate is less faithful than the extractive answer, or None: it
    must state every figure of the extractive answer and no other, name no place in the
    app the extractive answer doesn't, use almost only words of the page and the question
    (at most LLM_MAX_NEW_WORDS of its content words new: "can vary depending on the type"
    is a claim of its own), and say the same thing (cosine similarity of at least
    LLM_MIN_SUPPORT to the extractive answer)."""
    if guardrails.numbers(extractive) - guardrails.numbers(candidate.text):
        return "misses_fact"
    if guardrails.numbers(candidate.text) - guardrails.numbers(extractive):
        return "other_figure"
    if any(" ".join(path.split()) not in " ".join(extractive.split()) for path in _APP_PATH.findall(candidate.text)):
        return "other_place"
    known = set(answers.content_words(" ".join([extractive, *sources])))
    words = answers.content_words(candidate.text)
    if words and sum(w not in known for w in words) / len(words) > settings.LLM_MAX_NEW_WORDS:
        return "new_words"
    if candidate.support < settings.LLM_MIN_SUPPORT:
        return "unfaithful"
    return None
