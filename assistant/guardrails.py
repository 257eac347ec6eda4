"""Guardrails around the LLM: what may go to the generator, and what may come back.

Going out (prompt, query embedding) and into the action server's logs:
  - redact() replaces card numbers (13-19 digits, spaces or dashes allowed, Luhn
    checked), IBANs (mod-97 checked), e-mail addresses and phone numbers with
    placeholders such as "[card number]";
  - cap() cuts user text to a length;
  - quote() makes user text inert data inside the prompt (see conversation.py).

Coming back, check_reply() names the first reason to reject a candidate reply, or
None: too short or too long; repetitive (a loop); it repeats the system prompt (a run of
LEAK_NGRAM words in common, or talk of its instructions); it contains personal data
(card number, IBAN, e-mail, phone) or a URL that the passages do not contain, i.e.
possibly another customer's; it claims facts about the customer's own account
("your balance is", "I have checked your account"); or it states a number (amount,
date, limit) that is not in the passages.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable, List, Optional, Set, Tuple

# -- personal data -------------------------------------------------------------------

CARD = "[card number]"
IBAN = "[IBAN]"
EMAIL = "[email]"
PHONE = "[phone]"

_DIGIT_RUN = re.compile(r"(?<![\w])\d+(?:[ -]\d+)*(?![\w])")
_IBAN_RUN = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,}")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ().-]{7,}\d(?![\w])")
_URL = re.compile(r"\b(?:https?://|www\.)\S+|\b[a-z0-9-]+\.(?:com|co\.uk|org|net|io|bank|uk)\b(?:/\S*)?", re.I)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = re.sub(r"\s", "", text).upper()
    if not 15 <= len(compact) <= 34 or not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _cards_in_run(run: str) -> str:
    """Replace the longest stretch of whole digit groups that is a card number, then look either side."""
    spans = [m.span() for m in re.finditer(r"\d+", run)]
    best = None
    for i in range(len(spans)):
        digits = ""
        for j in range(i, len(spans)):
            digits += run[spans[j][0] : spans[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                if best is None or spans[j][1] - spans[i][0] > best[1] - best[0]:
                    best = (spans[i][0], spans[j][1])
    if best is None:
        return run
    return _cards_in_run(run[: best[0]]) + CARD + _cards_in_run(run[best[1] :])


def _redact_cards(text: str) -> str:
    return _DIGIT_RUN.sub(lambda match: _cards_in_run(match.group(0)), text)


def _redact_ibans(text: str) -> str:
    """The longest prefix of each IBAN-shaped run that passes the mod-97 check."""

    def replace(match: re.Match) -> str:
        run = match.group(0)
        for end in range(min(len(run), 42), 14, -1):  # 34 characters plus spaces
            if (end == len(run) or not run[end].isalnum()) and iban_valid(run[:end]):
                return IBAN + run[end:]
        return run

    return _IBAN_RUN.sub(replace, text)


def _redact_phones(text: str) -> str:
    def replace(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        international = match.group(0).startswith(("+", "00"))
        return PHONE if (9 if international else 10) <= len(digits) <= 15 else match.group(0)

    return _PHONE.sub(replace, text)


def redact(text: str) -> str:
    """The text with card numbers, IBANs, e-mail addresses and phone numbers replaced."""
    if not text:
        return text
    text = _redact_cards(text)
    text = _redact_ibans(text)
    text = _EMAIL.sub(EMAIL, text)
    return _redact_phones(text)


def personal_data(text: str) -> List[str]:
    """The card numbers, IBANs, e-mails and phone numbers found in text (for reply checks)."""
    found = []
    for pattern in (_DIGIT_RUN, _IBAN_RUN, _EMAIL, _PHONE):
        for match in pattern.finditer(text):
            if redact(match.group(0)) != match.group(0):
                found.append(match.group(0))
    return found


def cap(text: str, limit: int) -> str:
    """At most limit characters; a cut text ends with an ellipsis."""
    text = text.strip()
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def quote(text: str) -> str:
    """User text as inert data: one line per line, inside quotes that it cannot close."""
    cleaned = text.replace('"""', "''").replace("\r", "")
    return '"""' + cleaned.strip() + '"""'


# -- logs ----------------------------------------------------------------------------

_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process (message and arguments), whatever the handler."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format: leave it to the handler to report
            return record
        record.msg, record.args = redact(message), None
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


# -- replies -------------------------------------------------------------------------

MIN_REPLY_WORDS = 4
MAX_REPLY_WORDS = 120
LEAK_NGRAM = 6

_ACCOUNT_CLAIMS = [
    re.compile(p, re.I)
    for p in (
        r"\byour (?:current |available |account |card )?balance (?:is|was|shows|of|stands)\b",
        r"\byou (?:currently |still )?have (?:£|€|\$|\d)",
        r"\byour (?:account|card|sort code|iban|pin|passcode)(?: number)? (?:is|was) \S*\d",
        r"\byour (?:payment|transfer|refund|top[- ]up|card|withdrawal|deposit)s? (?:has|have|was|were) "
        r"(?:already |now |just )?(?:been )?(?:sent|received|approved|declined|refunded|blocked|delivered|"
        r"dispatched|completed|cancelled|credited|processed)\b",
        r"\bi(?: have|'ve| just)? (?:checked|looked at|reviewed|verified|refunded|cancelled|blocked|unblocked|"
        r"approved|reversed|sent|credited) (?:your|the payment|the transfer|it)\b",
        r"\bi can see (?:that )?(?:your|the payment|the transfer|a payment)\b",
    )
]
_INSTRUCTION_TALK = re.compile(r"\b(?:system prompt|my (?:instructions|rules|prompt)|these (?:rules|instructions))\b", re.I)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _words(text: str) -> List[str]:
    return re.findall(r"[a-z0-9£€$%]+", text.lower())


def _ngrams(words: List[str], n: int) -> Set[tuple]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def leaks_prompt(reply: str, prompt: str, n: int = LEAK_NGRAM) -> bool:
    """True when the reply repeats a run of n words of the prompt, or talks about its instructions."""
    if _INSTRUCTION_TALK.search(reply):
        return True
    return bool(_ngrams(_words(reply), n) & _ngrams(_words(prompt), n))


def numbers(text: str) -> Set[str]:
    return {m.group(0).replace(",", "").rstrip(".") for m in _NUMBER.finditer(text)}


def check_reply(reply: str, passages: Iterable[str], system_prompt: str) -> Optional[str]:
    """The reason to reject this candidate reply, or None when it may be sent."""
    words = reply.split()
    if len(words) < MIN_REPLY_WORDS:
        return "too_short"
    if len(words) > MAX_REPLY_WORDS:
        return "too_long"
    if repetitive(reply):
        return "repetitive"
    if leaks_prompt(reply, system_prompt):
        return "prompt_leak"
    source = " ".join(passages)
    if any(item not in source for item in personal_data(reply)):
        return "personal_data"
    if any(url.group(0).lower() not in source.lower() for url in _URL.finditer(reply)):
        return "url"
    if any(pattern.search(reply) for pattern in _ACCOUNT_CLAIMS):
        return "account_claim"
    if numbers(reply) - numbers(source):
        return "unsupported_number"
    return None


def sentences(text: str) -> List[str]:
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def repair(reply: str, passages: Iterable[str]) -> Tuple[str, List[str]]:
    """The reply without its sentences that state a number the passages do not contain
    and without repeats of a sentence; and what was dropped ("unsupported_number",
    "repeated_sentence"), one entry per sentence. The reply is unchanged when nothing is
    dropped or nothing would be left (check_reply then says why it is rejected)."""
    known = numbers(" ".join(passages))
    kept, dropped, seen = [], [], set()
    for sentence in sentences(reply):
        key = " ".join(_words(sentence))
        if key and key in seen:
            dropped.append("repeated_sentence")
        elif numbers(sentence) - known:
            dropped.append("unsupported_number")
        else:
            kept.append(sentence)
            seen.add(key)
    return (" ".join(kept), dropped) if dropped and kept else (reply, [])


def repetitive(reply: str) -> bool:
    """A sentence said twice, or few distinct words: a small model stuck in a loop."""
    said = [" ".join(_words(s)) for s in sentences(reply) if _words(s)]
    if len(said) != len(set(said)):
        return True
    words = _words(reply)
    return len(words) >= 16 and len(set(words)) < 0.45 * len(words)


def tidy(reply: str) -> str:
    """Drop a speaker label or "The answer is:", and a sentence cut off by max_tokens
    (when a whole one precedes it)."""
    text = " ".join(reply.split())
    text = re.sub(r"^(?:assistant|answer|bot|reply)\s*:\s*", "", text, flags=re.I)
    text = re.sub(r"^(?:the )?answer(?: to [^:.]{0,60})? is:\s*", "", text, flags=re.I)
    if len(text) > 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    if text and text[-1] not in ".!?\"')":
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)]
        if ends:
            text = text[: ends[-1]]
    return text
