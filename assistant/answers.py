"""Extractive answers: the knowledge pages' own sentences that state what the customer
asked, or an honest "I don't know".

A 135M-parameter model writes fluent replies with wrong facts; a sentence copied from
the right page carries its fact by construction. So a question is answered like this:

  1. Context. A short, elliptical message after a question ("and what does that cost?",
     "do Saturdays count?") continues it: the query becomes the earlier question plus
     this message, the earlier answer's page is preferred, the sentences already sent
     are not repeated, and the NLU's intent of the elliptical message (unreliable) is
     replaced by the earlier question's. `followup_context` decides.
  2. Retrieve: the passages of the best pages (assistant/knowledge.py, with the NLU's
     intent ranking as a prior).
  3. Rank sentences of those passages: cosine similarity of the sentence to the query,
     plus ANSWER_FACT_WEIGHT times the query's best similarity to the customer questions
     the page lists for that sentence (front matter `facts:`; its own similarity when it
     has none: a customer's "need to pay my builder £30,000 today, in one go?" is far
     closer to such a question than to "The most you can send in one transfer is
     £25,000"), plus the share of the question's content words it contains
     (IDF-weighted), plus a
     bonus when it states the kind of fact asked for (an amount for "how much", a
     duration for "how long", a place in the app for "where"), plus its page's
     retrieval score relative to the best page.
  4. Gate (`Gate`): a logistic model over the retrieval score and its margin, the best
     sentence's figures, the share of the question's content words the page holds
     (IDF-weighted, so that "mortgage" or "overdraft" weigh more than "card"), whether
     the kind of fact asked for is stated, and the NLU's figures, fitted on the
     development question sets (`python -m bench.gate`), estimates whether the answer
     states the fact asked for; below its threshold, the honest reply with a person
     offered. ANSWER_GATE=rules uses fixed thresholds instead (KNOWLEDGE_MIN_SCORE,
     ANSWER_MIN_SIMILARITY, ANSWER_MIN_COVERAGE, ANSWER_KIND_GATE). Either way, a
     minimum asked for that no sentence states ("up to £5,000" is not a minimum) is
     refused. (A sentence that moves money the other way, paying cash in for "how much
     cash can I get out?", is never ranked at all.)
  5. Reply: the best sentence, the sentence before it when it starts with a pronoun,
     and the next-best sentence of the same passage when it scores close to the best
     (ANSWER_SECOND_MARGIN); when these state none of the kind of fact asked for ("how
     do I get a new one?" answered with why the chip fails), the page's best sentence
     that does, if it scores within ANSWER_KIND_MARGIN; verbatim, in the page's order,
     with the page's title as the source.

This module needs only numpy (and assistant.knowledge, assistant.facts): no Rasa, no generator.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set

import numpy as np

from assistant import settings
from assistant.facts import (  # noqa: F401 (also the vocabulary callers use through this module)
    ABROAD, BOUND_WORDS, EEA, STATED_KINDS, asks, content_words, missing_kind, money_direction, opposite_direction,
    place_words, satisfies, states, stem,
)
from assistant.knowledge import Hit, KnowledgeIndex, unit

# "can I change it?", "does it work abroad?": a question of its own, not a fragment.
_YES_NO = re.compile(r"\b(can|could|do|does|did|is|are|will|would|should|may)\s+(i|it|they|you|we|my|that|this|"
                     r"those|these|there)\b", re.I)


def wanted_kinds(focus: str, followup: Optional["FollowUp"]) -> Set[str]:
    """What the message asks for; a follow-up that names no kind of its own ("and by bank
    transfer?") asks for the same kind as the question it continues ("top up limit?")."""
    kinds = asks(focus)
    if not kinds and followup is not None and not _YES_NO.search(focus):
        kinds |= asks(followup.question)
    return kinds


# -- follow-ups ------------------------------------------------------------------

_CONTINUES = re.compile(
    r"^\s*(and|but|also|so|or|plus|what about|how about|what if|and if|same for|is that|does that|do they|"
    r"is it|are they|will it|would it|can it|does it|do those|what's that|whats that|then|ok so|okay so)\b",
    re.I,
)
_ADDS_ON = re.compile(r"\b(too|as well|either|instead|also)\W*$", re.I)  # "can I hold Ethereum too?"
_ANAPHOR = re.compile(r"\b(it|that|this|those|these|they|them|there|one|ones|same)\b", re.I)


@dataclass
class Turn:
    text: str
    intent_ranking: List[Dict[str, Any]] = field(default_factory=list)
    intent: Optional[str] = None


@dataclass
class FollowUp:
    """The earlier question an elliptical message continues, and what the bot said to it."""
    question: str
    intent_ranking: List[Dict[str, Any]]
    pages: List[str]  # the pages its answer cited
    said: List[str]  # the bot's texts after it


def event_ranking(event: Mapping[str, Any]) -> List[Dict[str, Any]]:
    ranking = (event.get("parse_data") or {}).get("intent_ranking")
    return [r for r in ranking if isinstance(r, dict)] if isinstance(ranking, list) else []


_QUESTION_WORD = re.compile(r"^\s*(how|what|whats|what's|when|where|why|which|who|can|could|do|does|did|is|are|will|"
                            r"would|should|may|am|have|has)\b", re.I)


def is_question(text: str) -> bool:
    """A question rather than a bare detail ("£150", "yesterday", "the one ending 3377")."""
    return "?" in text or bool(_QUESTION_WORD.search(text))


_ASKING = re.compile(r"\b(how|what|whats|when|where|why|which|is there|are there|can i|can you|do i|do you|does it|"
                     r"will it|will i|is it|should i)\b", re.I)


def asks_something(text: str) -> bool:
    """A question somewhere in the message ("lost my card, how do I stop anyone using it"),
    not only a statement ("I lost my card")."""
    return "?" in text or bool(_ASKING.search(text))


def opens_as_continuation(text: str) -> bool:
    """A short message that opens like a continuation of the last one ("and ...", "what about ...")."""
    return bool(_CONTINUES.search(text)) and len(re.findall(r"[\w']+", text)) <= 14


def is_elliptical(text: str, is_topic: Optional[Callable[[str], bool]] = None) -> bool:
    """A message that only makes sense after another: short, and either opens like a
    continuation ("and ...", "what about ...") or names its subject with a pronoun, or
    has at most two content words of which none names a topic of its own (`is_topic`:
    "apple pay?" and "wheres my iban" stand alone, "how much?" does not)."""
    words = re.findall(r"[\w']+", text)
    if not words:
        return False
    if _CONTINUES.search(text):
        return len(words) <= 14
    if len(words) > 9:
        return False
    if _ANAPHOR.search(text) or _ADDS_ON.search(text):
        return True
    content = content_words(text)
    return len(content) <= 2 and not (is_topic and any(is_topic(w) for w in content))


_REFERENCE = re.compile(r"\b(it|that|this|those|these|they|them)\b", re.I)


def is_bare_reference(text: str, is_topic: Callable[..., bool]) -> bool:
    """A few words whose subject is a pronoun, with no topic named ("is it free?", "does
    it cost anything?"): read alone, nothing says what "it" is."""
    return len(re.findall(r"[\w']+", text)) <= 6 and bool(_REFERENCE.search(text)) and not any(
        is_topic(word, ()) for word in content_words(text))


# Intents of the conversation itself, not of a topic a follow-up could continue.
NO_TOPIC_INTENTS = frozenset({"greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "request_human",
                              "handoff_released"})


def leans_on_context(text: str) -> bool:
    """A message that may continue the conversation although it is too long to be taken
    for a fragment: it opens like a continuation, or refers back with a pronoun ("my son
    is 15 though, is there anything for him?", "do I need to do anything with it when it
    comes?"). Such a message is read in context only when it cannot be answered alone."""
    words = re.findall(r"[\w']+", text)
    return 0 < len(words) <= settings.ANSWER_CONTEXT_MAX_WORDS and bool(
        _CONTINUES.search(text) or _ANAPHOR.search(text) or _ADDS_ON.search(text) or _AFTERTHOUGHT.search(text))


# "..., though?", "then?": said of something said before
_AFTERTHOUGHT = re.compile(r"(though|then|instead|either)", re.I)


def followup_context(events: Sequence[Mapping[str, Any]],
                     is_topic: Optional[Callable[[str, Sequence[str]], bool]] = None,
                     loose: bool = False) -> Optional[FollowUp]:
    """The earlier question of this session that the last user message continues, or None
    when the message stands on its own (or nothing came before it; `is_topic`: see
    is_elliptical). `loose`: any message that leans on the context (`leans_on_context`),
    for a second reading of one the pages cannot answer on its own."""
    users = []
    for i, event in enumerate(events):
        if event.get("event") == "session_started":
            users = []
        elif event.get("event") == "user":
            text = (event.get("text") or "").strip()
            if text and not text.startswith("/"):
                users.append(i)
    if len(users) < 2:
        return None
    last = events[users[-1]]
    cited = [p for event in events[users[-2] + 1: users[-1]] if event.get("event") == "bot"
             for p in ((event.get("metadata") or {}).get("sources") or []) if isinstance(p, str)]
    text = last.get("text") or ""
    if not (leans_on_context(text) if loose else is_elliptical(text, is_topic and (lambda word: is_topic(word, cited)))):
        return None
    # The question it continues: the latest earlier message that was not itself a fragment
    # of the same kind ("and at weekends?" after "and what does it cost?" still points back).
    chain = []
    for i in reversed(users[:-1]):
        chain.append(i)
        if not is_elliptical(events[i].get("text") or "", is_topic and (lambda word: is_topic(word, ()))):
            break
    # greetings, thanks and asking for a person are not a topic to continue: only messages
    # with content words, of an intent that has a topic
    chain = [i for i in chain if content_words(events[i].get("text") or "")
             and ((events[i].get("parse_data") or {}).get("intent") or {}).get("name") not in NO_TOPIC_INTENTS]
    if not chain:
        return None
    start = chain[-1]
    question = " ".join((events[i].get("text") or "").strip() for i in reversed(chain))
    pages, said = [], []
    for event in events[start + 1: users[-1]]:
        if event.get("event") == "bot":
            said.append(event.get("text") or "")
            pages += [p for p in ((event.get("metadata") or {}).get("sources") or []) if isinstance(p, str)]
    return FollowUp(question, event_ranking(events[start]), list(dict.fromkeys(pages)), said)


def covered_words(text: str) -> List[str]:
    """The content words the pages must have for a question (country names are covered by
    the pages' "EEA" / "outside the UK and EEA": place_words)."""
    text = re.sub(r"\bunited (?:states|kingdom|arab emirates)\b", " ", text, flags=re.I)
    return [w for w in content_words(text) if w not in EEA and w not in ABROAD and w not in BOUND_WORDS]


def asked_parts(question: str) -> List[str]:
    """The whole message, and its last question when a story comes before it ("I'm
    flying to Spain next week ... What's the daily cash limit?"): the story's words need
    not be on the page."""
    from assistant.guardrails import SENTENCE_END

    parts = [question]
    sentences_ = [s for s in SENTENCE_END.split(question.strip()) if s]
    asked = [s for s in sentences_ if s.rstrip().endswith("?") or _QUESTION_WORD.search(s)]
    if len(sentences_) > 1 and asked and len(covered_words(asked[-1])) >= 2:
        parts.append(asked[-1])
    return parts


# -- sentences ----------------------------------------------------------------------


@dataclass
class Scored:
    row: int  # the sentence's row in the index
    score: float
    similarity: float
    overlap: float
    kinds: Set[str]
    fact: float = 0.0  # similarity to the customer questions the sentence answers (its own without any)


@dataclass
class Extract:
    """The extractive answer: sentences (verbatim) of one page, or nothing when the pages
    do not cover the question (`answerable` False)."""
    answerable: bool
    sentences: List[str]
    page_id: Optional[str]
    title: Optional[str]
    coverage: float  # IDF-weighted share of the question's content words the best page contains
    retrieval: float  # the best passage's retrieval score
    best: Optional[Scored] = None
    why: str = ""  # why not answerable
    features: Dict[str, float] = field(default_factory=dict)  # what the gate weighed (GATE_FEATURES)
    pair: Optional[np.ndarray] = None  # pair_features of the question and the best sentence
    probability: Optional[float] = None  # the learned gate's estimate that the answer is right

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


class SentenceIndex:
    """The index's sentences as plain text, each page's vocabulary, and word IDF."""

    def __init__(self, index: KnowledgeIndex, page_questions: Mapping[str, Sequence[str]]) -> None:
        from assistant.guardrails import SENTENCE_END

        self.index = index
        texts = [s for p in index.passages for s in SENTENCE_END.split(p.text) if len(s.split()) >= 3]
        if len(texts) != len(index.sentence_rows):
            raise ValueError("the index's sentences do not match its passages: rebuild it")
        self.texts = texts
        self.vectors = index.sentence_vectors  # one per sentence, with the page title in front
        self.words = [set(content_words(t)) for t in texts]
        vocab: Dict[str, Set[str]] = {}
        for passage in index.passages:
            vocab.setdefault(passage.page_id, set()).update(content_words(
                f"{passage.title} {passage.heading} {passage.text}"))
        for page, questions in page_questions.items():
            if page in vocab:
                for question in questions:
                    vocab[page].update(content_words(question))
        self.page_vocab = vocab
        # IDF over pages: a word every page has (card) tells little; one no page has
        # (mortgage) weighs the most.
        n = len(vocab)
        df: Dict[str, int] = {}
        for words in vocab.values():
            for w in words:
                df[w] = df.get(w, 0) + 1
        self.df, self.pages = df, n
        self.sentence_df: Dict[str, int] = {}
        for words in self.words:
            for w in words:
                self.sentence_df[w] = self.sentence_df.get(w, 0) + 1

    def is_topic(self, word: str, pages: Sequence[str] = ()) -> bool:
        """A word on few pages ("cheque", "iban"; ANSWER_TOPIC_MAX_SHARE of them at most)
        and on none of `pages` (the ones the bot just cited: "do Saturdays count?" after
        the exchange rates stays on them): a message naming it has a topic of its own."""
        df = self.df.get(word, 0)
        return 0 < df <= settings.ANSWER_TOPIC_MAX_SHARE * self.pages and not any(
            word in self.page_vocab.get(page, ()) for page in pages)

    def idf(self, word: str) -> float:
        """Rarer across pages weighs more; a word no page uses weighs ANSWER_UNKNOWN_WORD_WEIGHT
        (it may be the topic the pages miss, "mortgage", or only the customer's story, "my nan")."""
        df = self.df.get(word, 0)
        return math.log((self.pages + 1) / (df + 0.5)) if df else settings.ANSWER_UNKNOWN_WORD_WEIGHT

    def sentence_idf(self, word: str) -> float:
        return math.log((len(self.texts) + 1) / (self.sentence_df.get(word, 0) + 0.5))

    def coverage(self, words: Iterable[str], page: str) -> float:
        """IDF-weighted share of the words that the page (text and questions) contains."""
        words = set(words)
        total = sum(self.idf(w) for w in words)
        if total <= 0:
            return 1.0
        vocab = self.page_vocab.get(page, set())
        return sum(self.idf(w) for w in words if w in vocab) / total

    def overlap(self, words: Set[str], row: int) -> float:
        total = sum(self.sentence_idf(w) for w in words)
        if total <= 0:
            return 0.0
        return sum(self.sentence_idf(w) for w in words if w in self.words[row]) / total


def rank(sentences: SentenceIndex, query: np.ndarray, focus: str, hits: Sequence[Hit],
         avoid: Iterable[str] = (), prefer_pages: Sequence[str] = (),
         focus_query: Optional[np.ndarray] = None, wanted: Optional[Set[str]] = None,
         question: str = "") -> List[Scored]:
    """The sentences of the hits' pages, best first (see the module's docstring).
    `question`: the whole question (with the earlier one for a follow-up), for the way
    money moves when `focus` does not say ("how much cash can I take out?" "and is it free?")."""
    index = sentences.index
    page_score: Dict[str, float] = {}
    for hit in hits:
        page_score[hit.passage.page_id] = max(page_score.get(hit.passage.page_id, -1.0),
                                              hit.score + settings.KNOWLEDGE_INTENT_WEIGHT * hit.intent)
    for page in prefer_pages:
        if page in page_score:
            page_score[page] += settings.ANSWER_FOLLOWUP_PAGE_BONUS
    if not page_score:
        return []
    best_page = max(page_score.values())
    rows = [r for r, p in enumerate(index.sentence_rows) if index.passages[p].page_id in page_score]
    if not rows:
        return []
    vectors = sentences.vectors[rows]
    similarity = vectors @ unit(query)
    # how close the query is to the customer questions a sentence answers (its page's
    # `facts:`); a sentence without any counts its own similarity
    fact = index.fact_similarity(query)[rows]
    if focus_query is not None:  # a follow-up: what it asks, within the earlier question's topic
        similarity = (similarity + vectors @ unit(focus_query)) / 2
        fact = (fact + index.fact_similarity(focus_query)[rows]) / 2
    fact = np.where(np.isnan(fact), similarity, fact)
    passage_similarity = index.vectors @ unit(query)  # the section's own (its heading says what it is about)
    wanted = asks(focus) if wanted is None else wanted
    words = set(content_words(focus))
    avoided = {" ".join(s.split()) for s in avoid}
    way = focus if money_direction(focus) else question
    scored = []
    for row, sim, fact_sim in zip(rows, similarity, fact):
        text = sentences.texts[row]
        if opposite_direction(way, text):
            continue  # "how much cash can I get out?" is not answered by a limit on paying cash in
        kinds = states(text)
        overlap = sentences.overlap(words, row)
        score = (float(sim) + settings.ANSWER_FACT_WEIGHT * float(fact_sim)
                 + settings.ANSWER_OVERLAP_WEIGHT * overlap
                 + settings.ANSWER_SECTION_WEIGHT * float(passage_similarity[index.sentence_rows[row]])
                 + settings.ANSWER_KIND_WEIGHT * any(satisfies(k, text) for k in wanted
                                                     if k != "place" and not k.startswith("period:"))
                 + settings.ANSWER_PLACE_WEIGHT * ("place" in wanted and "place" in kinds)
                 + settings.ANSWER_PAGE_WEIGHT * (page_score[index.passages[index.sentence_rows[row]].page_id]
                                                  - best_page))
        if any(text in said for said in avoided):
            score -= settings.ANSWER_REPEAT_PENALTY
        scored.append(Scored(row, score, float(sim), overlap, kinds, float(fact_sim)))
    scored.sort(key=lambda s: -s.score)
    return scored


# A sentence that leans on the one before it ("It takes...", "Then cancel it...").
_NEEDS_PREVIOUS = re.compile(r"(It|Its|This|That|They|These|Those|There|He|She|Then|After that|Once (?:it|they|you"
                             r"(?:'ve)? do)|Otherwise|However|But|Also|So|If (?:so|not|it doesn't))\b")


_FIGURES = re.compile(r"\d+(?:[.,]\d+)*")


def repeats(text: str, chosen: Sequence[str]) -> bool:
    """The sentence says again what the chosen ones say: every figure of it is stated
    there, and at most a fifth of its (at least six) content words are new: pages state a
    key fact in their summary and again in their section. Short sentences are never
    repeats ("Lakeside doesn't offer credit cards" says what its words alone don't)."""
    said = " ".join(chosen)
    if set(_FIGURES.findall(text)) - set(_FIGURES.findall(said)):
        return False
    words = set(content_words(text))
    return len(words) >= 6 and len(words - set(content_words(said))) <= len(words) / 5


def compose(sentences: SentenceIndex, ranked: Sequence[Scored], wanted: Iterable[str] = ()) -> List[int]:
    """The rows to send: the best sentence, the one before it when it opens with a pronoun,
    and up to ANSWER_MAX_SENTENCES in all of the same page that score within
    ANSWER_SECOND_MARGIN of the best and do not repeat one already chosen; in the page's
    order. When they state none of a `wanted` kind ("how do I get a new one?" answered
    with why the card fails, not where to order one), the page's best sentence that does
    joins them if it scores within ANSWER_KIND_MARGIN of the best."""
    index = sentences.index
    best = ranked[0]

    def page(row: int) -> str:
        return index.passages[int(index.sentence_rows[row])].page_id

    rows = [best.row]
    for other in ranked[1:]:
        if len(rows) >= settings.ANSWER_MAX_SENTENCES or other.score < best.score - settings.ANSWER_SECOND_MARGIN:
            break
        if page(other.row) == page(best.row):
            rows.append(other.row)
    # a repeat takes its place without being sent: the same sentences as without the check, fewer
    rows = [row for i, row in enumerate(rows)
            if not repeats(sentences.texts[row], [sentences.texts[r] for r in rows[:i]])]
    for kind in sorted(set(wanted) & STATED_KINDS):
        if len(rows) >= settings.ANSWER_MAX_SENTENCES or satisfies(kind, " ".join(sentences.texts[r] for r in rows)):
            continue
        for other in ranked[1:]:
            if other.score < best.score - settings.ANSWER_KIND_MARGIN:
                break
            if page(other.row) == page(best.row) and other.row not in rows and satisfies(kind, sentences.texts[other.row]):
                rows.append(other.row)
                break
    for row in list(rows):
        if _NEEDS_PREVIOUS.match(sentences.texts[row]) and row > 0 \
                and int(index.sentence_rows[row - 1]) == int(index.sentence_rows[row]) and row - 1 not in rows:
            rows.append(row - 1)
    return sorted(set(rows))


# -- the answerability gate ---------------------------------------------------------

# What the learned gate weighs: retrieval (the best passage's score, its margin over the
# next page's, the NLU's prior for it), the best sentence (similarity, word overlap, rank
# score), the share of the question's words the page has, whether the kind of fact asked
# for is stated, the NLU's confidence, whether the message was read as a follow-up, and
# how much the question says; and `match`, a learned reading of the question's and the best
# sentence's embeddings together (`Gate.match`); and `fact`, the question's similarity to the
# customer questions the best sentence answers (`facts:` of its page).
GATE_FEATURES = ("retrieval", "similarity", "coverage", "overlap", "score", "kind_missing", "nlu", "followup",
                 "intent_prior", "page_margin", "best_page_intent", "n_words", "asks", "match", "fact")


def pair_features(question: np.ndarray, sentence: np.ndarray) -> np.ndarray:
    """The question's and the best sentence's unit embeddings, their absolute difference
    and their product (u, v, |u - v|, u * v, Sentence-BERT's classifier input): what the
    gate's `match` model reads. Cosine similarity weighs every dimension alike; the model
    learns which agreements mean "this sentence answers this question" and which questions
    the pages never answer (a spending limit on a junior card, Samsung Pay)."""
    question = np.asarray(question, dtype=np.float32).ravel()
    sentence = np.asarray(sentence, dtype=np.float32).ravel()
    return np.concatenate([question, sentence, np.abs(question - sentence), question * sentence])


@dataclass
class Gate:
    """A logistic model over GATE_FEATURES fitted on the development question sets
    (`python -m bench.gate`): the probability that the extractive answer states the fact
    asked for. Below `threshold`, the honest reply."""
    features: List[str]
    mean: List[float]
    scale: List[float]
    coef: List[float]
    intercept: float
    threshold: float
    # the `match` feature: a logistic model's log-odds over `pair_features` (fitted with the gate)
    match_coef: Optional[List[float]] = None
    match_intercept: float = 0.0

    def __post_init__(self) -> None:
        self._match = None if self.match_coef is None else np.asarray(self.match_coef, dtype=np.float32)

    @classmethod
    def load(cls, path: Any) -> "Gate":
        import json
        from pathlib import Path

        data = json.loads(Path(path).read_text())
        gate = cls(**{k: data[k] for k in ("features", "mean", "scale", "coef", "intercept", "threshold",
                                           "match_coef", "match_intercept") if k in data})
        if list(gate.features) != list(GATE_FEATURES) or not (
                len(gate.mean) == len(gate.scale) == len(gate.coef) == len(GATE_FEATURES)) or gate._match is None:
            raise ValueError(f"{path}: fitted on other features than {GATE_FEATURES}; refit with `python -m bench.gate`")
        return gate

    def match(self, pair: Optional[np.ndarray]) -> float:
        """The `match` feature of a question and its best sentence (`pair_features`)."""
        if self._match is None or pair is None:
            return 0.0
        if pair.size != self._match.size:
            raise ValueError(f"the gate's match model was fitted on embeddings of {self._match.size // 4} dimensions, "
                             f"these have {pair.size // 4}: refit it with `python -m bench.gate`")
        return float(self._match @ pair + self.match_intercept)

    def probability(self, values: Mapping[str, float]) -> float:
        z = self.intercept + sum(c * (float(values[f]) - m) / (s or 1.0)
                                 for f, m, s, c in zip(self.features, self.mean, self.scale, self.coef))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


_gate: Optional[Gate] = None


def load_gate() -> Gate:
    """The learned gate (ANSWER_GATE_FILE), read once per process."""
    global _gate
    if _gate is None:
        _gate = Gate.load(settings.ANSWER_GATE_FILE)
    return _gate


def gate_features(extract_: "Extract", hits: Sequence[Hit], question: str, wanted: Set[str],
                  followup: Optional[FollowUp], nlu_confidence: float, kind_missing: bool) -> Dict[str, float]:
    best = extract_.best
    others = [h.score for h in hits if h.passage.page_id != hits[0].passage.page_id]
    return {
        "retrieval": extract_.retrieval,
        "similarity": best.similarity if best else 0.0,
        "coverage": extract_.coverage,
        "overlap": best.overlap if best else 0.0,
        "score": best.score if best else 0.0,
        "kind_missing": float(kind_missing),
        "nlu": float(nlu_confidence),
        "followup": float(followup is not None),
        "intent_prior": float(hits[0].intent),
        "page_margin": float(hits[0].score - (others[0] if others else 0.0)),
        "best_page_intent": max([float(h.intent) for h in hits if h.passage.page_id == extract_.page_id] or [0.0]),
        "n_words": float(len(covered_words(question))),
        "asks": float(len(wanted)),
        "match": 0.0,  # set by the learned gate (Gate.match)
        "fact": best.fact if best else 0.0,
    }


def extract(sentences: SentenceIndex, query: np.ndarray, question: str, hits: Sequence[Hit],
            focus: Optional[str] = None, followup: Optional[FollowUp] = None,
            focus_query: Optional[np.ndarray] = None, nlu_confidence: float = 0.0) -> Extract:
    """The extractive answer to `question` (its vector `query`; `focus` is the part the
    sentences must answer: the last message of a follow-up, else the question), or the
    gate's refusal (ANSWER_GATE: `learned`, `rules`, or `off` to answer everything, for
    fitting the gate). `nlu_confidence`: the NLU's confidence in the message's intent."""
    focus = focus or question
    wanted = wanted_kinds(focus, followup)
    retrieval = hits[0].score if hits else 0.0
    if not hits:
        return Extract(False, [], None, None, 0.0, 0.0, why="no passages")
    ranked = rank(sentences, query, focus, hits, question=question, avoid=followup.said if followup else (),
                  prefer_pages=followup.pages if followup else (), focus_query=focus_query, wanted=wanted)
    if not ranked:
        return Extract(False, [], None, None, 0.0, retrieval, why="no sentences")
    best = ranked[0]
    page = sentences.index.passages[int(sentences.index.sentence_rows[best.row])].page_id
    coverage = max(sentences.coverage(covered_words(text), page) for text in asked_parts(question))
    title = sentences.index.titles[page]
    rows = compose(sentences, ranked, wanted)
    chosen = [sentences.texts[r] for r in rows]
    similar = {s.row: s.similarity for s in ranked}
    floor = settings.ANSWER_KIND_MIN_SIMILARITY if followup is None else 0.0
    stating = [sentences.texts[r] for r in rows if similar.get(r, 0.0) >= floor]
    kind_missing = missing_kind(focus, " ".join(stating), wanted, anchors=question)
    result = Extract(True, chosen, page, title, coverage, retrieval, best)
    result.features = gate_features(result, hits, question, wanted, followup, nlu_confidence, kind_missing)
    asked = unit(query) if focus_query is None else unit(unit(query) + unit(focus_query))
    result.pair = pair_features(asked, sentences.vectors[best.row])
    why = ""
    if settings.ANSWER_GATE == "learned":
        gate = load_gate()
        result.features["match"] = gate.match(result.pair)
        result.probability = gate.probability(result.features)
        why = "gate" if result.probability < gate.threshold else ""
    elif settings.ANSWER_GATE == "rules":
        if followup is None and retrieval < settings.KNOWLEDGE_MIN_SCORE:
            why = "retrieval"
        elif followup is None and max(best.similarity, best.fact) < settings.ANSWER_MIN_SIMILARITY:
            why = "similarity"
        elif coverage < settings.ANSWER_MIN_COVERAGE:
            why = "coverage"
        elif settings.ANSWER_KIND_GATE and kind_missing:
            why = "kind"
    if not why and settings.ANSWER_GATE != "off":
        if "least" in wanted and not satisfies("least", " ".join(chosen)):
            why = "minimum"  # "is there a minimum transfer?" answered with a maximum or a fee
    if why:
        result.answerable, result.sentences, result.why = False, [], why
    return result
