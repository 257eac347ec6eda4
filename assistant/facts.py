"""What a question asks for and what a sentence states: the words that carry meaning
(`content_words`), the kinds of fact (an amount, a time, a count, a rate, a place in the
app, and finer ones: a time of day, an age, a number of days or of things, the period of
a limit), and the pages' words for places. The answer gate (assistant/answers.py) refuses
when the kind asked for is not stated (`missing_kind`).

Needs only the standard library (and scikit-learn's English stop words where installed).
"""
from __future__ import annotations

import re
from typing import List, Optional, Set

from assistant import settings
from assistant.knowledge import STOP_WORDS

# -- words -------------------------------------------------------------------------

# Words that say nothing about what is asked (beyond knowledge.STOP_WORDS).
FILLER = frozenset(
    "hi hello hey thanks thank please ok okay yes yeah also really just still want wanted need needs know "
    "tell help like lakeside bank im ive dont cant wont didnt doesnt isnt arent ill youre theres whats "
    "hows whos wondering question ask asking quick quickly guys mate pls plz thx u ur r some something "
    "anything thing things way should might must may shall there here then now one ones much many more "
    "got get getting go going make does did done said say says see able ever other another".split()
)
# Who the customer is talking about: part of the story, never what the pages must cover.
PEOPLE = frozenset(
    "mum mom mam dad mother father sister brother son daughter wife husband partner fiance fiancee friend friends "
    "boss landlord landlady uncle aunt auntie nephew niece grandson granddaughter nan nana gran grandma grandad "
    "grandpa grandfather grandmother kid kids girlfriend boyfriend flatmate housemate roommate colleague cousin "
    "neighbour neighbor".split()
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
            # topping, top; cancelled, cancel (but called, call; missed, miss)
            if suffix in ("ing", "edly", "ed") and len(word) > 3 and word[-1] == word[-2] \
                    and word[-1] not in "aeiousz" and (word[-1] != "l" or len(word) > 5):
                word = word[:-1]
            break
    return word[:7]


_PEOPLE = frozenset(stem(w) for w in PEOPLE)  # "my sister's account", "my sisters account"

# Customers' words for what the pages say another way, each group read as its first word
# (on both sides, so ranking and coverage meet): British banking slang and short forms.
SYNONYMS = [
    "abroad overseas",
    "stolen nicked pinched robbed",
    "atm cashpoint",
    "percent percentage",
    "phone mobile smartphone",
    "google gpay",
    "money funds",
    "close shut",
    "pound quid",
    # a period by its adjective: "daily limit" is the limit "per day"
    "day daily",
    "week weekly",
    "month monthly",
    "year yearly annual annually",
]
_CANONICAL = {stem(w): stem(group.split()[0]) for group in SYNONYMS for w in group.split()}


def content_words(text: str) -> List[str]:
    """The stems of the words of a text that carry its meaning (no stop words, no filler;
    SYNONYMS merged; "%" is the word percent)."""
    text = re.sub(r"\b[Ii][’']d\b", "I would", text)  # not the ID a customer shows
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", "").replace("’", "").replace("%", " percent "))
    stems = (stem(w) for w in words if w not in STOP_WORDS and w not in FILLER and w not in FUNCTION_WORDS
             and len(w) > 1)
    return [_CANONICAL.get(w, w) for w in stems if w not in _PEOPLE]


# -- what kind of fact a question asks for, and what a sentence states ---------------

_TIME_WORDS = (r"\b(how long|how soon|how quickly|how fast|how quick|what time|by when|until when|deadline|"
               r"expire\w*|eta|estimated?|turnaround)\b")
_ASKS = {
    "money": re.compile(r"\b(how much|cost|costs|costing|price|fee|fees|charg\w*|pay for|free|expensive|cheap\w*|"
                        r"commission|surcharge)\b", re.I),
    "time": re.compile(_TIME_WORDS + r"|"
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
#   least     "what's the minimum top-up?"           a lower bound (a minimum, "at least", "no
#                                                    minimum"): "up to £5,000" answers the most
_CLOCK_ASKED = re.compile(r"\b(what time|cut-?off|by what time|opening hours|what hours|open until|close at)\b", re.I)
_CLOCK_STATED = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm)\b|\b\d{1,2}:\d{2}\b|\bnoon\b|\bmidday\b|\bmidnight\b|"
                           r"\b24/7\b|\bany ?time\b|\b24 hours a day\b", re.I)
_AGE_ASKED = re.compile(r"\b(how old|what age|minimum age|age limit|age requirement|old enough|too young|"
                        r"under 1[0-9]s?|teenager)\b", re.I)
_AGE_STATED = re.compile(r"\b\d{1,2}\s*(?:or over|or older|or above|and over|and older|\+|years? old)|"
                         r"\baged? (?:\d|under|over)|\b(?:over|under) (?:the age of )?\d{2}\b", re.I)
# "what's the smallest amount I can exchange?": an amount of money, not a rate
_AMOUNT_ASKED = re.compile(r"\b(?:smallest|largest|biggest|minimum|maximum|min|max|lowest|highest|most|least)\s+"
                           r"(?:amount|sum|payment|top-?up|transfer|withdrawal|deposit|balance)\b|\bhow much (?:(?:i|you|we) )?can\b|"
                           r"\bwhat amount\b|\bthe (?:most|least|max|min) (?:i|you|we) can\b", re.I)
_AMOUNT_STATED = re.compile(r"[£€$]\s?\d|\b\d[\d,]*(?:\.\d+)?\s?(?:pounds|euros?|dollars|GBP|EUR|USD)\b|"
                            r"\bno (?:set )?(?:minimum|maximum|limit)\b|\bunlimited\b|\bnot limited\b|"
                            r"\baren't limited\b", re.I)
# A lower bound asked for, and stated; "minimum age" is an age, not this.
_LEAST_ASKED = re.compile(r"\b(minimum|min|smallest|lowest|(?<!at )least)\b(?! age)", re.I)
_LEAST_STATED = re.compile(r"\b(minimum|at least|smallest|lowest|as little as|any amount|no lower limit|"
                           r"starting (?:at|from)|from [£€$]\s?\d)", re.I)
_UNITS = ("year", "month", "week", "day", "hour", "minute")
_UNIT_ASKED = re.compile(r"\bhow many (years|months|weeks|days|hours|minutes)\b", re.I)
_NUMBER = (r"(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|a|an|a single|"
           r"a couple of|several)")
_MANY_ASKED = re.compile(r"\bhow many ((?:[a-z']+ ){0,2}[a-z']+)", re.I)
_MANY_STATED = re.compile(rf"\b{_NUMBER}\b|\bno (?:set )?limit\b|\bunlimited\b|\bnot limited\b|\bas many\b|"
                          r"\bany number\b", re.I)
_TRIES = frozenset({"time", "attempt", "tri", "trie", "try", "goes", "guess", "chanc"})
# Customers' words for an upper bound: the kind of fact asked for (`asks`), not a topic the
# page must name ("the max I can top up", "the most cash I can take out"), since pages
# state maxima as "up to" or "limit". A minimum stays a word the page must have.
BOUND_WORDS = frozenset(stem(w) for w in "max maximum most biggest largest highest cap".split())
_VERB_AFTER_NUMBER = re.compile(r"(can|could|will|would|is|are|was|were|has|have|had|may|must|should|need|needs)\b",
                                re.I)
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
            _TIME_WORDS, text, re.I):
        kinds.discard("time")
    if _CLOCK_ASKED.search(text):
        kinds = (kinds - {"time"}) | {"clock"}
    if _AMOUNT_ASKED.search(text):
        kinds = (kinds - {"money", "count"}) | {"amount"}
    if _AGE_ASKED.search(text):
        kinds = (kinds - {"count", "time"}) | {"age"}
    elif _LEAST_ASKED.search(text):
        kinds.add("least")
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


# The kinds of fact `states` finds in a sentence.
STATED_KINDS = frozenset(_STATES)


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
    if name == "least":
        return bool(_LEAST_STATED.search(reply))
    if name == "unit":
        return bool(re.search(rf"\b{_NUMBER}(?:[–-]\d+)?\s+(?:working |business |calendar |full )?{arg}s?\b", reply, re.I))
    if name == "many":
        stems = set(arg.split(","))
        if stems & _TRIES:  # "how many times / goes" is answered in attempts or tries
            stems |= _TRIES
        tokens = re.findall(r"\S+", reply)
        for match in _MANY_STATED.finditer(reply):
            at = len(re.findall(r"\S+", reply[: match.start()]))
            if match.group(0).lower() in ("a", "an") and not re.match(r"an? (single|maximum|limit)", reply[match.start():], re.I):
                continue
            # the thing counted follows the number, before any verb: "up to 3 virtual cards", not
            # "aged 13–17 can have a junior account"
            window = []
            for token in tokens[at + 1: at + 5]:
                if _VERB_AFTER_NUMBER.match(token):
                    break
                window.append(token)
            after = {w for t in tokens[at: at + 1] + window for w in content_words(t)}
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


# Which way money moves: out of the account (withdraw, spend, send) or into it (pay in,
# deposit, top up, receive). Sentence embeddings hardly tell "take cash out at the Post
# Office" from "pay cash in at the Post Office"; a sentence about the other way does not
# answer the question.
_MONEY_IN = re.compile(r"\b(pay(?:ing)? (?:\w+ )?in(?:to)?|paid (?:\w+ )?in(?:to)?|put(?:ting)? (?:\S+ )?into|deposit\w*|top(?:ping)?[- ]?ups?|topped up|"
                       r"add(?:ing)? money|receiv\w*|send(?:s|ing)? me|sent me|pay(?:s|ing)? me|paid me)\b", re.I)
_MONEY_OUT = re.compile(r"\b(withdraw\w*|take (?:\w+ ){0,2}out|took (?:\w+ ){0,2}out|pull (?:\w+ ){0,2}out|get (?:some )?cash|"
                        r"get(?:ting)? (?:\w+ ){0,2}out|"
                        r"cash out|spend\w*|spent|send(?!(?:s|ing)? me)\w*|sent(?! me))\b", re.I)


def money_direction(text: str) -> Set[str]:
    """{"in"}, {"out"}, both or neither: which way the text moves money."""
    found = set()
    if _MONEY_OUT.search(_MONEY_IN.sub(" ", text)):
        found.add("out")
    if _MONEY_IN.search(text):
        found.add("in")
    return found


def opposite_direction(question: str, sentence: str) -> bool:
    """The question moves money one way and the sentence only the other."""
    asked, stated = money_direction(question), money_direction(sentence)
    return len(asked) == 1 and len(stated) == 1 and asked != stated


# Kinds a reply must state when the question asks for them: a question about an amount,
# a time or a limit whose best sentences state none is one the pages do not answer.
GATED_KINDS = frozenset({"money", "time", "count", "rate"})


# Words on nearly every page: a figure next to them says little about what was asked.
GENERIC_WORDS = frozenset(stem(w) for w in "card cards account app lakeside money pay payment payments".split())
# Words of the period a limit is counted over: "£5,000 per day" says nothing about what the
# customer asked to do daily.
# Words that name the kind of fact asked for, not what it is about: in "what's the daily
# limit on spending in shops?", a figure next to "limited" may be any limit.
KIND_WORDS = frozenset(stem(w) for w in "limit limits limited maximum max minimum min amount much cost costs fee fees "
                       "charge charges price long time rate".split())
PERIOD_WORDS = frozenset(stem(w) for w in "day days daily week weeks weekly month months monthly year years yearly "
                         "annual annually per each every".split())


def missing_kind(question: str, reply: str, wanted: Optional[Set[str]] = None, anchors: Optional[str] = None
                 ) -> bool:
    """The question asks for an amount, time, count or rate (or a finer kind; `wanted`
    replaces what it asks), and the reply states none of them; or it asks for a period
    ("monthly") and the reply speaks of another one ("per day")."""
    wanted = {k for k in (asks(question) if wanted is None else wanted) if k in GATED_KINDS or ":" in k
              or k in ("clock", "age", "amount", "least")}
    # a period ("monthly") must be stated as asked, and a minimum must be stated as a minimum
    required = {k for k in wanted if k.startswith("period:") or k == "least"}
    if any(not satisfies(k, reply) for k in required):
        return True
    wanted -= required
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
    words = set(content_words(anchors or question)) - GENERIC_WORDS - PERIOD_WORDS
    tokens = re.findall(r"\S+", reply)
    stems = [set(content_words(t)) for t in tokens]
    for kind in wanted:
        for match in _STATES[kind].finditer(reply):
            at = len(re.findall(r"\S+", reply[: match.start()]))
            window = stems[max(0, at - settings.ANSWER_KIND_WINDOW): at + settings.ANSWER_KIND_WINDOW + 1]
            if not words or any(w in words for near in window for w in near):
                return False
    return True
