"""Extractive answers: the knowledge pages' own sentences that state what the customer
asked, or an honest "I don't know".

A 135M-parameter model writes fluent replies with wrong facts; a sentence copied from
the right page carries its fact by construction. So a question is answered like this:

  1. Context. A short, elliptical message after a question ("and what does that cost?",
     "do Saturdays count?") continues it: the query becomes the earlier question plus
     this message, the earlier answer's page is preferred, the sentences already sent
     are not repeated, and the NLU's intent of the elliptical message (unreliable) is
     replaced by the earlier question's. `followup_context` decides.
  2. Retrieve: the passages of the best pages (actions/knowledge.py, with the NLU's
     intent ranking as a prior).
  3. Rank sentences of those passages: cosine similarity of the sentence to the query,
     plus the share of the question's content words it contains (IDF-weighted), plus a
     bonus when it states the kind of fact asked for (an amount for "how much", a
     duration for "how long", a place in the app for "where"), plus its page's
     retrieval score relative to the best page.
  4. Gate (`answerable`): the pages cover the question when the best passage's
     retrieval score reaches KNOWLEDGE_MIN_SCORE and the best page contains enough of
     the question's content words (ANSWER_MIN_COVERAGE, IDF-weighted, so that
     "mortgage" or "overdraft" weigh more than "card"). Otherwise the honest reply
     with a person offered.
  5. Reply: the best sentence, the sentence before it when it starts with a pronoun,
     and the next-best sentence of the same passage when it scores close to the best
     (ANSWER_SECOND_MARGIN); verbatim, in the page's order, with the page's title as
     the source.

This module needs only numpy (and actions.knowledge): no Rasa, no generator.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set

import numpy as np

from actions import settings
from actions.knowledge import Hit, KnowledgeIndex, STOP_WORDS, unit

# -- words -------------------------------------------------------------------------

# Words that say nothing about what is asked (beyond knowledge.STOP_WORDS).
FILLER = frozenset(
    "hi hello hey thanks thank please ok okay yes yeah also really just still want wanted need needs know "
    "tell help like lakeside bank im ive dont cant wont didnt doesnt isnt arent id ill youre theres whats "
    "hows whos wondering question ask asking quick quickly guys mate pls plz thx u ur r some something "
    "anything thing things way should might must may shall there here then now one ones much many more "
    "got get getting go going make does did done said say says see able ever other another".split()
)


# English function words (scikit-learn's list, which Rasa's environment has) that carry
# no topic, minus the ones that do on a bank's pages ("top up", "interest", "call").
def _english_function_words() -> frozenset:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    except ImportError:  # pragma: no cover - Rasa's environment has scikit-learn
        return frozenset()
    keep = set("amount bill call interest top name first last back front detail elsewhere not no nothing none "
               "cannot cant never full empty keep move show system fire under over per within without before "
               "after up off out down twenty fifty hundred take give put made found both".split())
    return frozenset(ENGLISH_STOP_WORDS - keep)


FUNCTION_WORDS = _english_function_words()


def stem(word: str) -> str:
    """A crude suffix-stripping stem: charges, charged, charging and charge meet."""
    for suffix in ("ing", "edly", "ed", "es", "s", "ly", "e"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word[:7]


def content_words(text: str) -> List[str]:
    """The stems of the words of a text that carry its meaning (no stop words, no filler)."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return [stem(w) for w in words if w not in STOP_WORDS and w not in FILLER and w not in FUNCTION_WORDS
            and len(w) > 1]


# -- what kind of fact a question asks for, and what a sentence states ---------------

_ASKS = {
    "money": re.compile(r"\b(how much|cost|costs|costing|price|fee|fees|charg\w*|pay for|free|expensive|cheap\w*|"
                        r"commission|surcharge)\b", re.I),
    "time": re.compile(r"\b(how long|how soon|how quickly|what time|by when|until when|deadline|expire\w*)\b|"
                       r"^\s*when\b|\bwhen(?:'s| will| does| do| can| is| should| would| did| are)\b", re.I),
    "count": re.compile(r"\b(how many|limits?|limited|maximum|max|minimum|min|up to|allowance|how often|"
                        r"times|attempts|tries|biggest|largest|smallest|highest|lowest|what amount|"
                        r"how big|how large)\b", re.I),
    "place": re.compile(r"\b(where|which (menu|tab|screen|section|option|button)|in the app|how (do|can|to|would)"
                        r" (i|we|you)|steps?)\b", re.I),
    "rate": re.compile(r"\b(rate|markup|mark-up|percent\w*|%)", re.I),
}
_STATES = {
    "money": re.compile(r"[£€$]\s?\d|\b\d+(?:\.\d+)?\s?%|\bfree\b|\bno (?:fee|charge)|\bat no cost\b|"
                        r"\bdon't charge\b|\bcharge\b", re.I),
    "time": re.compile(r"\b\d+(?:[–-]\d+)?\s+(?:working |business |calendar )?(?:days?|hours?|minutes?|weeks?|"
                       r"months?|years?)\b|\binstantly\b|\bimmediately\b|\bnext working day\b|\bsame day\b|"
                       r"\bwithin minutes\b|\bmonday|\bweekend|\bsaturday|\bsunday|\b\d+(?:st|nd|rd|th)\b|"
                       r"\bfew (?:minutes|hours|days)\b|\bstraight away\b|\bright away\b|\bat once\b", re.I),
    "count": re.compile(r"\d|\bno (?:set )?limit\b|\bunlimited\b|\bnot limited\b|\baren't limited\b|"
                        r"\bno maximum\b|\bno minimum\b|\bone\b|\btwo\b|\bthree\b|\bfour\b|\bfive\b|\bsix\b", re.I),
    "place": re.compile(r"\b[A-Z][\w ]{1,30} > [A-Z]|\bin the Lakeside app\b|\bunder [A-Z]", re.I),
    "rate": re.compile(r"\d+(?:\.\d+)?\s?%|\binterbank\b|\bmid-market\b", re.I),
}

# Finer kinds, each with what a reply must say to answer it:
#   clock     "what time is the cut-off?"            a time of day (5pm, 17:30, midnight)
#   age       "how old do I need to be?"             an age (18 or over)
#   unit:U    "how many years is it valid?"          a number of that unit (3 years)
#   many:W    "how many spare cards can I have?"     a number just before the thing counted
#   period:P  "what's the monthly limit?"            the same period, when the reply names one
_CLOCK_ASKED = re.compile(r"\b(what time|cut-?off|by what time|opening hours|what hours|open until|close at)\b", re.I)
_CLOCK_STATED = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm)\b|\b\d{1,2}:\d{2}\b|\bnoon\b|\bmidday\b|\bmidnight\b|"
                           r"\b24/7\b|\bany ?time\b|\b24 hours a day\b", re.I)
_AGE_ASKED = re.compile(r"\b(how old|what age|minimum age|age limit|age requirement|old enough|too young|"
                        r"under 1[0-9]s?|teenager)\b", re.I)
_AGE_STATED = re.compile(r"\b\d{1,2}\s*(?:or over|or older|or above|and over|and older|\+|years? old)|"
                         r"\baged? (?:\d|under|over)|\b(?:over|under) (?:the age of )?\d{2}\b", re.I)
# "what's the smallest amount I can exchange?": an amount of money, not a rate
_AMOUNT_ASKED = re.compile(r"\b(?:smallest|largest|biggest|minimum|maximum|min|max|lowest|highest|most|least)\s+"
                           r"(?:amount|sum|payment|top-?up|transfer|withdrawal|deposit|balance)\b|\bhow much can\b|"
                           r"\bwhat amount\b", re.I)
_AMOUNT_STATED = re.compile(r"[£€$]\s?\d|\b\d[\d,]*(?:\.\d+)?\s?(?:pounds|euros?|dollars|GBP|EUR|USD)\b|"
                            r"\bno (?:set )?(?:minimum|maximum|limit)\b|\bunlimited\b|\bnot limited\b|"
                            r"\baren't limited\b", re.I)
_UNITS = ("year", "month", "week", "day", "hour", "minute")
_UNIT_ASKED = re.compile(r"\bhow many (years|months|weeks|days|hours|minutes)\b", re.I)
_NUMBER = (r"(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|a|an|a single|"
           r"a couple of|several)")
_MANY_ASKED = re.compile(r"\bhow many ((?:[a-z']+ ){0,2}[a-z']+)", re.I)
_MANY_STATED = re.compile(rf"\b{_NUMBER}\b|\bno (?:set )?limit\b|\bunlimited\b|\bnot limited\b|\bas many\b|"
                          r"\bany number\b", re.I)
_PERIODS = {
    "day": re.compile(r"\b(daily|per day|a day|each day|every day|in a day|one day|24 hours|today)\b", re.I),
    "week": re.compile(r"\b(weekly|per week|a week|each week|every week)\b", re.I),
    "month": re.compile(r"\b(monthly|per month|a month|each month|every month|calendar month)\b", re.I),
    "year": re.compile(r"\b(yearly|per year|a year|each year|every year|annual|annually)\b", re.I),
    "payment": re.compile(r"\b(per (?:payment|transaction|withdrawal|top-?up|transfer)|each (?:payment|transaction|"
                          r"withdrawal|top-?up|transfer)|in one go|at a time|single (?:payment|transaction)|"
                          r"one payment)\b", re.I),
}
# A conditional opening ("When a top-up fails, is money taken?") asks no time.
_WHEN_CLAUSE = re.compile(r"^\s*when\b[^,?]*,\s*(?:is|are|can|could|do|does|will|would|should|what|how|who|where|"
                          r"which|why|am|was|were|did|has|have)\b", re.I)


def asks(text: str) -> Set[str]:
    """The kinds of fact the question asks for: money, time, count, place, rate, and the
    finer clock, age, unit:U, many:W (stems) and period:P."""
    kinds = {kind for kind, pattern in _ASKS.items() if pattern.search(text)}
    if "time" in kinds and _WHEN_CLAUSE.search(text) and not re.search(
            r"\b(how long|how soon|how quickly|what time|by when|until when|deadline|expire\w*)\b", text, re.I):
        kinds.discard("time")
    if _CLOCK_ASKED.search(text):
        kinds = (kinds - {"time"}) | {"clock"}
    if _AMOUNT_ASKED.search(text):
        kinds = (kinds - {"money", "count"}) | {"amount"}
    if _AGE_ASKED.search(text):
        kinds = (kinds - {"count", "time"}) | {"age"}
    unit_ = _UNIT_ASKED.search(text)
    if unit_:
        kinds = (kinds - {"count", "time"}) | {"unit:" + unit_.group(1).lower().rstrip("s")}
    else:
        many = _MANY_ASKED.search(text)
        stems = [w for w in content_words(many.group(1))] if many else []
        if stems:
            kinds = (kinds - {"count"}) | {"many:" + ",".join(stems)}
    if kinds & {"count", "money", "amount"} or any(k.startswith("many:") for k in kinds):
        kinds |= {"period:" + p for p, pattern in _PERIODS.items() if pattern.search(text)}
    return kinds


def states(sentence: str) -> Set[str]:
    return {kind for kind, pattern in _STATES.items() if pattern.search(sentence)}


def satisfies(kind: str, reply: str) -> bool:
    """The reply states a fact of this finer kind (see above; base kinds: `states`)."""
    name, _, arg = kind.partition(":")
    if name == "clock":
        return bool(_CLOCK_STATED.search(reply))
    if name == "age":
        return bool(_AGE_STATED.search(reply))
    if name == "amount":
        return bool(_AMOUNT_STATED.search(reply))
    if name == "unit":
        return bool(re.search(rf"\b{_NUMBER}(?:[–-]\d+)?\s+(?:working |business |calendar |full )?{arg}s?\b", reply, re.I))
    if name == "many":
        stems = set(arg.split(","))
        if "time" in stems:  # "how many times" is answered in attempts or tries
            stems |= {"attempt", "tri", "try"}
        tokens = re.findall(r"\S+", reply)
        for match in _MANY_STATED.finditer(reply):
            at = len(re.findall(r"\S+", reply[: match.start()]))
            if match.group(0).lower() in ("a", "an") and not re.match(r"an? (single|maximum|limit)", reply[match.start():], re.I):
                continue
            after = {w for t in tokens[at: at + 5] for w in content_words(t)}
            if after & stems or re.match(r"no |unlimited|not limited|as many|any number", match.group(0), re.I):
                return True
        return False
    if name == "period":
        named = {p for p, pattern in _PERIODS.items() if pattern.search(reply)}
        return not named or arg in named
    return kind in states(reply)


# Where a country is, in the words the pages use: they speak of "the UK", "the EEA" and
# "outside the UK and the EEA", never of Spain or Australia.
EEA = frozenset(
    "austria belgium bulgaria croatia cyprus czechia czech denmark estonia finland france germany greece "
    "hungary ireland italy latvia lithuania luxembourg malta netherlands holland poland portugal romania "
    "slovakia slovenia spain sweden iceland liechtenstein norway austrian belgian bulgarian croatian cypriot "
    "danish estonian finnish french german greek hungarian irish italian latvian lithuanian maltese dutch "
    "polish portuguese romanian slovak slovenian spanish swedish icelandic norwegian europe eu".split())
ABROAD = frozenset(
    "usa america american canada canadian australia australian zealand india indian china chinese "
    "japan japanese brazil brazilian mexico mexican nigeria nigerian africa african russia russian turkey "
    "turkish dubai uae emirates egypt thailand singapore hong kong pakistan philippines switzerland swiss "
    "argentina ukraine ukrainian morocco kenya ghana vietnam korea israel saudi qatar".split())


def place_words(text: str) -> str:
    """The pages' words for the countries a text names ("EEA", "outside the UK and EEA"), or ""."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    extra = []
    if words & EEA:
        extra.append("elsewhere in the EEA")
    # "US" only in capitals, "states" only after "united": "us" and "states" are common words
    if words & ABROAD or re.search(r"\bU\.?S\.?A?\b", text) or re.search(r"\bunited states\b", text, re.I):
        extra.append("outside the UK and EEA")
    return " ".join(extra)


# Kinds a reply must state when the question asks for them: a question about an amount,
# a time or a limit whose best sentences state none is one the pages do not answer.
GATED_KINDS = frozenset({"money", "time", "count", "rate"})


# Words on nearly every page: a figure next to them says little about what was asked.
GENERIC_WORDS = frozenset(stem(w) for w in "card cards account app lakeside money pay payment payments".split())


def missing_kind(question: str, reply: str, wanted: Optional[Set[str]] = None, anchors: Optional[str] = None
                 ) -> bool:
    """The question asks for an amount, time, count or rate (or a finer kind; `wanted`
    replaces what it asks), and the reply states none of them; or it asks for a period
    ("monthly") and the reply speaks of another one ("per day")."""
    wanted = {k for k in (asks(question) if wanted is None else wanted) if k in GATED_KINDS or ":" in k
              or k in ("clock", "age", "amount")}
    periods = {k for k in wanted if k.startswith("period:")}
    if any(not satisfies(k, reply) for k in periods):
        return True
    wanted -= periods
    if not wanted:
        return False
    if any(satisfies(k, reply) for k in wanted if k not in GATED_KINDS):
        return False
    wanted &= GATED_KINDS
    if not wanted:
        return True
    if settings.ANSWER_KIND_WINDOW <= 0:
        return not wanted & states(reply)
    # anchored: the figure must stand near one of the question's own words
    words = set(content_words(anchors or question)) - GENERIC_WORDS
    tokens = re.findall(r"\S+", reply)
    stems = [set(content_words(t)) for t in tokens]
    for kind in wanted:
        for match in _STATES[kind].finditer(reply):
            at = len(re.findall(r"\S+", reply[: match.start()]))
            window = stems[max(0, at - settings.ANSWER_KIND_WINDOW): at + settings.ANSWER_KIND_WINDOW + 1]
            if not words or any(w in words for near in window for w in near):
                return False
    return True


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


def _ranking(event: Mapping[str, Any]) -> List[Dict[str, Any]]:
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


def is_elliptical(text: str) -> bool:
    """A message that only makes sense after another: short, and either opens like a
    continuation ("and ...", "what about ...") or names its subject with a pronoun, or
    has at most two content words."""
    words = re.findall(r"[\w']+", text)
    if not words:
        return False
    if _CONTINUES.search(text):
        return len(words) <= 14
    return len(words) <= 9 and bool(_ANAPHOR.search(text) or len(content_words(text)) <= 2)


def followup_context(events: Sequence[Mapping[str, Any]]) -> Optional[FollowUp]:
    """The earlier question of this session that the last user message continues, or None
    when the message stands on its own (or nothing came before it)."""
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
    if not is_elliptical(last.get("text") or ""):
        return None
    # The question it continues: the latest earlier message that was not itself a fragment
    # of the same kind ("and at weekends?" after "and what does it cost?" still points back).
    chain = []
    for i in reversed(users[:-1]):
        chain.append(i)
        if not is_elliptical(events[i].get("text") or ""):
            break
    # greetings and thanks are not a topic to continue: only messages with content words
    chain = [i for i in chain if content_words(events[i].get("text") or "")]
    if not chain:
        return None
    start = chain[-1]
    question = " ".join((events[i].get("text") or "").strip() for i in reversed(chain))
    pages, said = [], []
    for event in events[start + 1: users[-1]]:
        if event.get("event") == "bot":
            said.append(event.get("text") or "")
            pages += [p for p in ((event.get("metadata") or {}).get("sources") or []) if isinstance(p, str)]
    return FollowUp(question, _ranking(events[start]), list(dict.fromkeys(pages)), said)


def covered_words(text: str) -> List[str]:
    """The content words the pages must have for a question (country names are covered by
    the pages' "EEA" / "outside the UK and EEA": place_words)."""
    return [w for w in content_words(text) if w not in EEA and w not in ABROAD]


def asked_parts(question: str) -> List[str]:
    """The whole message, and its last question when a story comes before it ("I'm
    flying to Spain next week ... What's the daily cash limit?"): the story's words need
    not be on the page."""
    from actions.guardrails import SENTENCE_END

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

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


class SentenceIndex:
    """The index's sentences as plain text, each page's vocabulary, and word IDF."""

    def __init__(self, index: KnowledgeIndex, page_questions: Mapping[str, Sequence[str]]) -> None:
        from actions.guardrails import SENTENCE_END

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
         focus_query: Optional[np.ndarray] = None, wanted: Optional[Set[str]] = None) -> List[Scored]:
    """The sentences of the hits' pages, best first (see the module's docstring)."""
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
    if focus_query is not None:  # a follow-up: what it asks, within the earlier question's topic
        similarity = (similarity + vectors @ unit(focus_query)) / 2
    passage_similarity = index.vectors @ unit(query)  # the section's own (its heading says what it is about)
    wanted = asks(focus) if wanted is None else wanted
    words = set(content_words(focus))
    avoided = {" ".join(s.split()) for s in avoid}
    scored = []
    for row, sim in zip(rows, similarity):
        text = sentences.texts[row]
        kinds = states(text)
        overlap = sentences.overlap(words, row)
        score = (float(sim) + settings.ANSWER_OVERLAP_WEIGHT * overlap
                 + settings.ANSWER_SECTION_WEIGHT * float(passage_similarity[index.sentence_rows[row]])
                 + settings.ANSWER_KIND_WEIGHT * any(satisfies(k, text) for k in wanted
                                                     if k != "place" and not k.startswith("period:"))
                 + settings.ANSWER_PLACE_WEIGHT * ("place" in wanted and "place" in kinds)
                 + settings.ANSWER_PAGE_WEIGHT * (page_score[index.passages[index.sentence_rows[row]].page_id]
                                                  - best_page))
        if any(text in said for said in avoided):
            score -= settings.ANSWER_REPEAT_PENALTY
        scored.append(Scored(row, score, float(sim), overlap, kinds))
    scored.sort(key=lambda s: -s.score)
    return scored


# A sentence that leans on the one before it ("It takes...", "Then cancel it...").
_NEEDS_PREVIOUS = re.compile(r"(It|Its|This|That|They|These|Those|There|He|She|Then|After that|Once (?:it|they|you"
                             r"(?:'ve)? do)|Otherwise|However|But|Also|So|If (?:so|not|it doesn't))\b")


def compose(sentences: SentenceIndex, ranked: Sequence[Scored]) -> List[int]:
    """The rows to send: the best sentence, the one before it when it opens with a pronoun,
    and up to ANSWER_MAX_SENTENCES in all of the same page that score within
    ANSWER_SECOND_MARGIN of the best; in the page's order."""
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
    for row in list(rows):
        if _NEEDS_PREVIOUS.match(sentences.texts[row]) and row > 0 \
                and int(index.sentence_rows[row - 1]) == int(index.sentence_rows[row]) and row - 1 not in rows:
            rows.append(row - 1)
    return sorted(set(rows))


def extract(sentences: SentenceIndex, query: np.ndarray, question: str, hits: Sequence[Hit],
            focus: Optional[str] = None, followup: Optional[FollowUp] = None,
            focus_query: Optional[np.ndarray] = None) -> Extract:
    """The extractive answer to `question` (its vector `query`; `focus` is the part the
    sentences must answer: the last message of a follow-up, else the question)."""
    focus = focus or question
    wanted = wanted_kinds(focus, followup)
    retrieval = hits[0].score if hits else 0.0
    if not hits:
        return Extract(False, [], None, None, 0.0, 0.0, why="no passages")
    ranked = rank(sentences, query, focus, hits, avoid=followup.said if followup else (),
                  prefer_pages=followup.pages if followup else (), focus_query=focus_query, wanted=wanted)
    if not ranked:
        return Extract(False, [], None, None, 0.0, retrieval, why="no sentences")
    best = ranked[0]
    page = sentences.index.passages[int(sentences.index.sentence_rows[best.row])].page_id
    coverage = max(sentences.coverage(covered_words(text), page) for text in asked_parts(question))
    title = sentences.index.titles[page]
    if followup is None and retrieval < settings.KNOWLEDGE_MIN_SCORE:
        return Extract(False, [], page, title, coverage, retrieval, best, why="retrieval")
    if followup is None and best.similarity < settings.ANSWER_MIN_SIMILARITY:
        return Extract(False, [], page, title, coverage, retrieval, best, why="similarity")
    if coverage < settings.ANSWER_MIN_COVERAGE:
        return Extract(False, [], page, title, coverage, retrieval, best, why="coverage")
    rows = compose(sentences, ranked)
    chosen = [sentences.texts[r] for r in rows]
    similar = {s.row: s.similarity for s in ranked}
    floor = settings.ANSWER_KIND_MIN_SIMILARITY if followup is None else 0.0
    stating = [sentences.texts[r] for r in rows if similar.get(r, 0.0) >= floor]
    if settings.ANSWER_KIND_GATE and missing_kind(focus, " ".join(stating), wanted, anchors=question):
        return Extract(False, [], page, title, coverage, retrieval, best, why="kind")
    return Extract(True, chosen, page, title, coverage, retrieval, best)
