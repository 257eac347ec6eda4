"""Reading amounts, dates, card endings and yes/no out of what customers type.

The NLU's RegexEntityExtractor finds the entities `amount`, `date` and `card_last4`
with the patterns in data/nlu/forms.yml (AMOUNT_PATTERNS, DATE_PATTERN and
CARD_LAST4_PATTERNS here, kept equal by tests/test_forms.py); the form validators then
read the value from the whole message with the functions below, which also understand
corrections: "sorry, it was 250 not 150" means 250.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import List, Optional, Tuple

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
         r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKDAY = r"(?:" + "|".join(WEEKDAYS) + r")"
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                "seven": 7, "eight": 8, "nine": 9, "ten": 10}

# -- the entity patterns (also in data/nlu/forms.yml) -------------------------------------

_MONTH_NAMES = ["january", "february", "march", "april", "june", "july", "august", "september",
                "october", "november", "december", *MONTHS, "sept"]
_NOT_AFTER = "".join(f"(?<!{word} )" for word in
                     [*_MONTH_NAMES, "ending", "ending in", "ending with", "ends in", "ends with",
                      "digits", "card", "gbp", "eur", "usd"])
AMOUNT_PATTERNS = [
    # with a currency sign or code in front: £250, € 1,200.50, GBP 80
    r"(?:[£€$] ?|\b(?:gbp|eur|usd) ?)\d+(?:,\d{3})*(?:\.\d{1,2})?\b",
    # a bare number, maybe with a currency word: 250, 45.99, 250 pounds, 99p; not a date,
    # a time, a duration or a card ending
    r"(?<![\d£€$.,:/-])(?<![£€$] )" + _NOT_AFTER
    + r"\b\d+(?:,\d{3})*(?:\.\d{1,2})?(?: ?(?:pounds?|quid|euros?|dollars?|gbp|eur|usd|p))?\b"
    + r"(?![.,/:-]?\d)(?! ?(?:st|nd|rd|th)\b)(?! (?:of )?" + MONTH + r"\b)"
    + r"(?! (?:days?|weeks?|months?|years?|hours?|hrs?|mins?|minutes?|working|am|pm|digits?)\b)(?! ?(?:am|pm)\b)",
]
DATE_PATTERN = (
    r"\b(?:today|yesterday|(?:the )?day before yesterday"
    r"|(?:\d{1,2}|a|an|one|two|three|four|five|six|seven|eight|nine|ten) (?:days?|weeks?) ago"
    r"|(?:last |this (?:past )?|on )?" + WEEKDAY
    + r"|(?:the )?\d{1,2}(?:st|nd|rd|th)?(?: of)? " + MONTH + r"\.?(?:,? \d{4})?"
    + r"|" + MONTH + r"\.? (?:the )?\d{1,2}(?:st|nd|rd|th)?(?:,? \d{4})?"
    + r"|\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{1,2}\.\d{1,2}\.\d{2,4}"
    + r"|(?:on )?the \d{1,2}(?:st|nd|rd|th))\b"
)
CARD_LAST4_PATTERNS = [
    # "ending 4821", "ends in 4821", "last 4 digits are 4821", "card 4821", "**** 4821"
    r"(?:(?<=ending )|(?<=ending in )|(?<=ending with )|(?<=ends in )|(?<=ends with )|(?<=ends )"
    r"|(?<=digits )|(?<=digits are )|(?<=digits: )|(?<=card )|(?<=\*)|(?<=\* ))\d{4}(?!\d)",
    # the whole message is four digits
    r"^\d{4}$",
]

_FLAGS = re.IGNORECASE
_AMOUNT_RES = [re.compile(p, _FLAGS) for p in AMOUNT_PATTERNS]
_DATE_RE = re.compile(DATE_PATTERN, _FLAGS)
_CARD_RES = [re.compile(p, _FLAGS) for p in CARD_LAST4_PATTERNS]
# A value right after one of these is the wrong one: "250 not 150", "250 instead of 150".
_NEGATION = re.compile(r"(?:\bnot|n't|\binstead of|\brather than|\bnot the)\s*(?:an?\s+|the\s+)?$", _FLAGS)
_PAYLOAD_JSON = re.compile(r"^/\w+(\{.*\})?$", re.DOTALL)


def _text(text: Optional[str]) -> str:
    """A button payload such as /inform{"amount": "250"} reads as its values."""
    text = (text or "").strip()
    match = _PAYLOAD_JSON.match(text)
    if match:
        import json

        try:
            values = json.loads(match.group(1) or "{}")
        except ValueError:
            return text
        return " ".join(str(v) for v in values.values()) if isinstance(values, dict) else text
    return text


def _chosen(spans: List[Tuple[int, int, str]], text: str) -> Optional[str]:
    """The value meant, from all found ones: the last one not negated ("250 not 150" -> 250)."""
    kept = [s for s in spans if not _NEGATION.search(text[max(0, s[0] - 16):s[0]])]
    if kept:
        return kept[-1][2]
    return None


# -- amounts ---------------------------------------------------------------------------


CURRENCY_SIGNS = {"£": "GBP", "€": "EUR", "$": "USD"}
CURRENCY_WORDS = {"pound": "GBP", "quid": "GBP", "gbp": "GBP", "euro": "EUR", "eur": "EUR",
                  "dollar": "USD", "usd": "USD"}


def amount_spans(text: str) -> List[Tuple[int, int, str]]:
    spans = []
    for pattern in _AMOUNT_RES:
        spans += [(m.start(), m.end(), m.group(0)) for m in pattern.finditer(text)]
    # a number inside a date ("3 March", "2025-03-01") is not an amount
    dates = [(m.start(), m.end()) for m in _DATE_RE.finditer(text)]
    spans = [s for s in spans if not any(a <= s[0] < b for a, b in dates)]
    return sorted(set(spans))


def to_minor(value: str) -> Optional[Tuple[int, Optional[str]]]:
    """'£1,200.50' -> (120050, 'GBP'); '99p' -> (99, 'GBP'); '250' -> (25000, None)."""
    raw = value.strip().lower()
    currency = next((code for sign, code in CURRENCY_SIGNS.items() if sign in raw), None)
    for word, code in CURRENCY_WORDS.items():
        if word in raw:
            currency = code
    pence = bool(re.search(r"\d\s*p$", raw))
    number = re.search(r"\d+(?:,\d{3})*(?:\.\d{1,2})?", raw)
    if not number:
        return None
    try:
        amount = Decimal(number.group(0).replace(",", ""))
    except InvalidOperation:
        return None
    minor = int(amount) if pence else int((amount * 100).to_integral_value())
    if minor <= 0:
        return None
    return minor, ("GBP" if pence else currency)


def parse_amount(text: Optional[str]) -> Optional[Tuple[int, Optional[str]]]:
    """The amount meant in a message, in minor units with its currency if said; or None."""
    text = _text(text)
    chosen = _chosen(amount_spans(text), text)
    return to_minor(chosen) if chosen else None


def has_amount(text: Optional[str]) -> bool:
    return bool(amount_spans(_text(text)))


def format_money(minor: int, currency: Optional[str] = "GBP") -> str:
    currency = currency or "GBP"
    sign = {"GBP": "£", "EUR": "€", "USD": "$"}.get(currency)
    number = f"{minor / 100:,.2f}"
    return f"{sign}{number}" if sign else f"{number} {currency}"


# -- dates -----------------------------------------------------------------------------


def _month(word: str) -> int:
    return MONTHS.index(word[:3].lower()) + 1


def _in_past(day: int, month: int, year: Optional[int], today: dt.date) -> Optional[dt.date]:
    try:
        if year is not None:
            return dt.date(year + (2000 if year < 100 else 0), month, day)
        candidate = dt.date(today.year, month, day)
        return candidate if candidate <= today else dt.date(today.year - 1, month, day)
    except ValueError:
        return None


def to_date(phrase: str, today: dt.date) -> Optional[dt.date]:
    """One date phrase (as DATE_PATTERN finds it) as a date on or before today."""
    p = re.sub(r"\s+", " ", phrase.strip().lower())
    if p == "today":
        return today
    if p == "yesterday":
        return today - dt.timedelta(days=1)
    if p.endswith("day before yesterday"):
        return today - dt.timedelta(days=2)
    m = re.fullmatch(r"(\w+) (day|week)s? ago", p)
    if m:
        n = int(m.group(1)) if m.group(1).isdigit() else NUMBER_WORDS.get(m.group(1))
        return None if n is None else today - dt.timedelta(days=n * (7 if m.group(2) == "week" else 1))
    m = re.fullmatch(r"(last |this (?:past )?|on )?(" + WEEKDAY + r")", p)
    if m:
        back = (today.weekday() - WEEKDAYS.index(m.group(2))) % 7
        if back == 0 and (m.group(1) or "").startswith("last"):
            back = 7
        return today - dt.timedelta(days=back)
    m = re.fullmatch(r"(?:the )?(\d{1,2})(?:st|nd|rd|th)?(?: of)? (" + MONTH + r")\.?(?:,? (\d{4}))?", p)
    if m:
        return _in_past(int(m.group(1)), _month(m.group(2)), int(m.group(3)) if m.group(3) else None, today)
    m = re.fullmatch(r"(" + MONTH + r")\.? (?:the )?(\d{1,2})(?:st|nd|rd|th)?(?:,? (\d{4}))?", p)
    if m:
        return _in_past(int(m.group(2)), _month(m.group(1)), int(m.group(3)) if m.group(3) else None, today)
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", p)
    if m:
        return _in_past(int(m.group(3)), int(m.group(2)), int(m.group(1)), today)
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?", p) or re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{2,4})", p)
    if m:  # day first, as in the UK
        return _in_past(int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None, today)
    m = re.fullmatch(r"(?:on )?the (\d{1,2})(?:st|nd|rd|th)", p)
    if m:
        day = int(m.group(1))
        month, year = today.month, today.year
        for _ in range(2):
            try:
                candidate = dt.date(year, month, day)
                if candidate <= today:
                    return candidate
            except ValueError:
                pass
            month, year = (12, year - 1) if month == 1 else (month - 1, year)
        return None
    return None


def parse_date(text: Optional[str], today: dt.date) -> Optional[dt.date]:
    """The date meant in a message (the last one not negated), or None."""
    text = _text(text)
    spans = [(m.start(), m.end(), m.group(0)) for m in _DATE_RE.finditer(text)]
    chosen = _chosen(spans, text)
    return to_date(chosen, today) if chosen else None


def has_date(text: Optional[str]) -> bool:
    return bool(_DATE_RE.search(_text(text)))


def format_date(day: dt.date, today: Optional[dt.date] = None) -> str:
    """'yesterday (28 November)', 'Friday 21 November', '3 March 2025'."""
    today = today or dt.date.today()
    plain = f"{day.day} {day.strftime('%B')}" + ("" if day.year == today.year else f" {day.year}")
    if day == today:
        return f"today ({plain})"
    if day == today - dt.timedelta(days=1):
        return f"yesterday ({plain})"
    if 0 < (today - day).days < 7:
        return f"{day.strftime('%A')} {plain}"
    return plain


# -- card endings and yes/no -------------------------------------------------------------


def parse_last4(text: Optional[str], anywhere: bool = True) -> Optional[str]:
    """The card ending mentioned: "ending 4821" or, with `anywhere`, any lone 4 digits."""
    text = _text(text)
    spans = []
    for pattern in _CARD_RES:
        spans += [(m.start(), m.end(), m.group(0)) for m in pattern.finditer(text)]
    if not spans and anywhere:
        spans = [(m.start(), m.end(), m.group(0))
                 for m in re.finditer(r"(?<![\d£€$.,])\b\d{4}\b(?![.,]?\d)", text)]
    return _chosen(sorted(spans), text)


_YES = re.compile(r"^(?:y|yes|yeah|yep|yup|sure|ok(?:ay)?|please do|go ahead|correct|right|that's (?:it|right|the one)"
                  r"|yes please|that one|definitely|absolutely|of course)\b", _FLAGS)
_NO = re.compile(r"^(?:n|no|nope|nah|not (?:that|this|it|really)|don't|do not|no thanks|wrong|neither)\b"
                 r"(?! (?:idea|clue|problem|worries)\b)", _FLAGS)


def yes_no(text: Optional[str]) -> Optional[bool]:
    text = _text(text).strip(" .!")
    if _NO.search(text):
        return False
    if _YES.search(text):
        return True
    return None
