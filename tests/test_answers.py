"""assistant/answers.py: the pure pieces (words, kinds of fact, follow-up context) on
hand-made inputs, and extractive answers from the REAL knowledge index
(build/knowledge/index.npz) with real query vectors from the NLU's ONNX encoder
(all-MiniLM-L6-v2, the vectors the generator's /v1/embeddings gives): no servers.

The questions are written for these tests, not taken from bench/answers/.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any, Dict, List

import numpy as np
import pytest

from actions import llm_reply
from assistant import answers, knowledge, settings
from assistant.answers import FollowUp
from assistant import generator_client as generator

# -- words ---------------------------------------------------------------------------


def test_stems_make_the_forms_of_a_word_meet():
    assert {answers.stem(w) for w in ("charges", "charged", "charging", "charge")} == {"charg"}
    assert answers.stem("card") == "card"  # short words keep their ending
    assert answers.stem("international") == "interna"  # cut at 7 letters
    assert answers.stem("fees") == "fees"  # no stem shorter than 4 letters


def test_content_words_drop_stop_words_filler_and_punctuation():
    assert answers.content_words("How much does it cost to freeze my card, please? I'm worried") == [
        "cost", "freez", "card", "worri"]
    assert answers.content_words("Hi there, thanks! OK") == []
    assert answers.content_words("I don't know, can't you tell me?") == []
    assert answers.content_words("") == []
    # customers' words meet the pages' ("nicked" is "stolen", "2%" has the word percent)
    assert answers.content_words("my card got nicked overseas") == ["card", "stolen", "abroad"]
    assert answers.content_words("shut my account, 50 quid left") == answers.content_words("close my account, 50 pounds left")
    assert answers.content_words("what ID do you accept? I'd like to know") == ["id", "accept"]  # ID, not I'd
    assert answers.content_words("a 2% markup") == answers.content_words("what percentage markup") == [
        "percent", "markup"]
    # who the customer speaks of is their story, not what the pages must cover
    assert answers.content_words("and to my sister in Poland?") == ["poland"]
    assert answers.content_words("can my son get a junior account") == ["junior", "account"]
    # an upper bound is the kind of fact asked for, not a word the page must have; a minimum is
    assert answers.covered_words("whats the max I can top up by card") == ["top", "card"]
    assert "minimum" in answers.covered_words("is there a minimum top up")
    # a doubled consonant before -ing or -ed is one: "topping up" is "top up"
    assert answers.content_words("topping up, cancelled, stopped") == answers.content_words("top up, cancel, stop")
    assert answers.content_words("called, spelled, missed") == answers.content_words("call, spell, miss")
    # a period by its adjective meets the pages' "per day"
    assert answers.content_words("daily limit, monthly fee") == answers.content_words("day limit, month fee")


# -- kinds of fact -------------------------------------------------------------------


@pytest.mark.parametrize("question, kinds", [
    ("How much does express delivery cost?", {"money"}),
    ("Is there a fee for ATM withdrawals?", {"money"}),
    ("how long does a transfer take?", {"time"}),
    ("When will my card arrive?", {"time"}),
    ("how many virtual cards can I have?", {"many:virtual,card"}),  # a number of those things
    ("how many days does it take?", {"unit:day"}),  # a number of days
    ("What time is the cut-off for a same-day transfer?", {"clock"}),  # a time of day
    ("how old do I have to be?", {"age"}),
    ("What's the monthly limit on transfers?", {"count", "period:month"}),
    ("When a top-up fails, is any money taken?", set()),  # "when ..., is ...": a condition, not a time
    ("When does my card arrive?", {"time"}),
    ("what's the exchange rate markup?", {"rate"}),
    ("where do I find my PIN?", {"place"}),
    ("how do I freeze my card?", {"place"}),
    ("can I freeze my card?", set()),
    ("and by bank transfer?", set()),
])
def test_what_a_question_asks_for(question, kinds):
    assert answers.asks(question) == kinds


@pytest.mark.parametrize("sentence, kinds", [
    ("Express delivery costs £5.", {"money", "count"}),
    ("Transfers within the UK are free.", {"money"}),
    ("It arrives within 3–5 working days.", {"time", "count"}),
    ("The new PIN works straight away.", {"time"}),
    ("You can have up to 3 virtual cards.", {"count"}),
    ("There's no limit on top-ups.", {"count"}),
    ("We add 0.5% at weekends.", {"money", "rate", "time", "count"}),
    ("Go to Card > Freeze in the app.", {"place"}),
    ("Virtual cards have no PIN.", set()),
])
def test_what_a_sentence_states(sentence, kinds):
    assert answers.states(sentence) == kinds


def test_a_reply_misses_the_kind_of_fact_asked_for():
    assert answers.missing_kind("how much is express delivery?", "Express delivery arrives the next working day.")
    assert not answers.missing_kind("how much is express delivery?", "Express delivery costs £5.")
    assert answers.missing_kind("how long does it take?", "Express delivery costs extra.")
    assert not answers.missing_kind("what's the weekend markup?", "We add 0.5% at weekends.")
    # a place in the app is not gated: "how do I ..." is answered by steps without a path too
    assert not answers.missing_kind("can I change my PIN in the app?", "PINs can't be changed in the app.")
    assert not answers.missing_kind("can I freeze my card?", "Yes, you can.")  # asks for no kind
    # `wanted` replaces what the question asks (a follow-up's carried-over kind)
    assert answers.missing_kind("and by bank transfer?", "Top-ups by bank transfer are welcome.", {"count"})
    assert not answers.missing_kind("and by bank transfer?", "There's no limit by bank transfer.", {"count"})
    assert not answers.missing_kind("how much is express delivery?", "It arrives tomorrow.", set())


@pytest.mark.parametrize("question, reply, missing", [
    ("how many years is my card valid?", "We send a new card 30 days before it expires.", True),
    ("how many years is my card valid?", "Cards are valid for 3 years.", False),
    ("how many spare cards can I have?", "Spare cards cost £5 each.", True),
    ("how many spare cards can I have?", "You can have up to two extra cards.", False),
    ("how many times can I get my PIN wrong?", "After 3 wrong attempts your PIN is blocked.", False),
    ("What time is the cut-off for same-day transfers?", "Transfers arrive the next working day.", True),
    ("What time is the cut-off for same-day transfers?", "Send it before 5pm to arrive today.", False),
    ("how old do you need to be?", "You need to be 18 or over to open an account.", False),
    ("how old do you need to be?", "It takes 5 minutes to open an account.", True),
    # a period asked for must be the one stated, when the reply states one
    ("What's the monthly limit on transfers out?", "The limit for transfers out is £25,000 per day.", True),
    ("What's the daily limit on transfers out?", "The limit for transfers out is £25,000 per day.", False),
    ("What's the limit on transfers out?", "The limit for transfers out is £25,000 per day.", False),
    # the period is not what the figure is about: spending daily is not topping up daily
    ("What's the daily limit on what I can spend in shops?", "You can top up by card up to £5,000 per day.", True),
    ("What's the daily limit on card top-ups?", "You can top up by card up to £5,000 per day.", False),
    ("how many goes do I get at the passcode?", "The app locks after 5 wrong attempts.", False),
    # a minimum is not answered by a maximum
    ("What's the minimum amount I can top up by card?", "You can top up by card up to £5,000 per day.", True),
    ("Is there a minimum balance?", "There's no minimum balance on a Lakeside account.", False),
    ("Is there a minimum top-up?", "You can top up at least £10 at a time.", False),
    ("what's the minimum age?", "You need to be 18 or over.", False),  # an age, not an amount
    # "the most I can" asks for an amount: a list of currencies does not state one
    ("What's the most I can exchange in one go?", "You can hold and exchange 30 currencies.", True),
    ("how much I can send abroad in a day?", "You can send up to £25,000 per day.", False),
    # the thing counted follows the number, before any verb
    ("How many junior accounts can one parent set up?", "Children aged 13–17 can have a junior account.", True),
    ("how many virtual cards can I have?", "You can have up to 3 standard virtual cards at a time.", False),
])
def test_finer_kinds_of_fact(question, reply, missing):
    assert answers.missing_kind(question, reply) is missing


def test_a_followup_without_a_kind_of_its_own_asks_for_the_earlier_questions():
    limit = FollowUp("what's the top up limit by card?", [], ["top-up-by-card"], [])
    cost = FollowUp("how much does express delivery cost?", [], ["card-delivery"], [])
    assert answers.wanted_kinds("and by bank transfer?", limit) == {"count"}  # carried over
    assert answers.wanted_kinds("and abroad?", cost) == {"money"}
    assert answers.wanted_kinds("and by bank transfer?", None) == set()  # nothing to carry
    assert answers.wanted_kinds("and how long does it take?", cost) == {"time"}  # its own kind wins
    # a yes/no question of its own ("does it ...", "can I ...") carries nothing over
    assert answers.wanted_kinds("does it work abroad?", cost) == set()
    assert answers.wanted_kinds("can I order it for my partner?", cost) == set()


# -- places --------------------------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("Can you post my card to Spain?", "elsewhere in the EEA"),
    ("I'm a student in Dublin, Ireland", "elsewhere in the EEA"),
    ("Can you send it to Canada?", "outside the UK and EEA"),
    ("I live in the US", "outside the UK and EEA"),
    ("moving to the United States soon", "outside the UK and EEA"),
    ("Does it cost more to South Africa?", "outside the UK and EEA"),
    ("one card in France, one in Japan", "elsewhere in the EEA outside the UK and EEA"),
    ("How long does delivery to London take?", ""),
    # common words that are no country
    ("Can you send my card to us please?", ""),
    ("what the app states about fees", ""),
    ("I live in south London", ""),
])
def test_place_words_name_countries_in_the_pages_words(text, words):
    assert answers.place_words(text) == words


# -- follow-ups ----------------------------------------------------------------------


def _user(text: str, *ranking: tuple) -> Dict[str, Any]:
    event: Dict[str, Any] = {"event": "user", "text": text}
    if ranking:
        event["parse_data"] = {"intent_ranking": [{"name": n, "confidence": c} for n, c in ranking]}
    return event


def _bot(text: str, *sources: str) -> Dict[str, Any]:
    return {"event": "bot", "text": text, "metadata": {"source": "knowledge", "sources": list(sources)}}


@pytest.mark.parametrize("text, elliptical", [
    ("and what does express cost?", True),  # opens like a continuation
    ("what about abroad?", True),
    ("is it free?", True),
    ("can I do it in the app?", True),  # short, names its subject with a pronoun
    ("outside the UK", True),  # short, two content words
    ("my card", True),
    ("How long does card delivery take to a UK address?", False),
    ("I ordered a new card last week and it still has not arrived", False),  # long
    ("and " + "very " * 14 + "long?", False),  # a continuation, but too long to be a fragment
    ("", False),
])
def test_which_messages_only_make_sense_after_another(text, elliptical):
    assert answers.is_elliptical(text) is elliptical


@pytest.mark.parametrize("text, elliptical", [
    ("do you do credit cards", False),  # a word on few pages: a topic of its own
    ("wheres my iban", False),
    ("how much?", True),  # no topic of its own
    ("is that free?", True),  # a pronoun: always a continuation
    ("can I hold Ethereum too?", True),  # "too" adds on to what came before
])
def test_a_short_message_naming_its_own_topic_stands_alone(real_sentences, text, elliptical):
    assert answers.is_elliptical(text, real_sentences.is_topic) is elliptical


def test_a_word_of_the_page_just_cited_continues_it(real_sentences):
    """"do Saturdays count?" after the exchange rates page stays on it (its word); "apple
    pay?" after the PIN page is a new question."""
    rates = [_user("what exchange rate do you use?"), _bot("At weekends we add 0.5%.", "exchange-rates")]
    pin = [_user("how do I change my PIN?"), _bot("Go to Card > Change PIN.", "card-pin")]
    assert answers.followup_context(rates + [_user("do Saturdays count?")], real_sentences.is_topic) is not None
    assert answers.followup_context(pin + [_user("apple pay?")], real_sentences.is_topic) is None
    assert answers.followup_context(pin + [_user("apple pay?")]) is not None  # without the pages' words


def test_asking_for_a_person_is_no_topic_to_continue():
    person = {"event": "user", "text": "I want to talk to a real person",
              "parse_data": {"intent": {"name": "request_human", "confidence": 0.99}}}
    assert answers.followup_context([person, _user("thanks, is my card on its way?")]) is None
    assert answers.followup_context([_user("I want to talk about my card"), _user("is it on its way?")]) is not None


@pytest.mark.parametrize("text, question", [
    ("How long does card delivery take?", True),
    ("can I", True),
    ("my card?", True),
    ("what is it", True),
    ("£150", False),
    ("yesterday", False),
    ("the one ending 3377", False),
])
def test_a_question_or_a_bare_detail(text, question):
    assert answers.is_question(text) is question


def test_a_fragment_continues_the_earlier_question_and_its_answer():
    events = [
        {"event": "session_started"},
        _user("How long does card delivery take?", ("card_arrival", 0.9)),
        {"event": "action", "name": "action_llm_reply"},
        _bot("A new card arrives within 3–5 working days.", "card-delivery"),
        _user("and what does express cost?", ("nlu_fallback", 0.4)),
    ]
    followup = answers.followup_context(events)
    assert followup == FollowUp(
        question="How long does card delivery take?",
        intent_ranking=[{"name": "card_arrival", "confidence": 0.9}],  # the earlier question's, not the fragment's
        pages=["card-delivery"],
        said=["A new card arrives within 3–5 working days."],
    )


def test_a_chain_of_fragments_points_back_to_the_question_they_continue():
    events = [
        _user("How long does card delivery take?", ("card_arrival", 0.9)),
        _bot("A new card arrives within 3–5 working days.", "card-delivery"),
        _user("and what does express cost?"),
        _bot("Express delivery costs £5.", "card-delivery", "fees"),
        _user("/affirm"),  # a button's payload is no message
        _user("and at weekends?"),
    ]
    followup = answers.followup_context(events)
    assert followup.question == "How long does card delivery take? and what does express cost?"
    assert followup.intent_ranking == [{"name": "card_arrival", "confidence": 0.9}]
    assert followup.pages == ["card-delivery", "fees"]  # each once, in order
    assert followup.said == ["A new card arrives within 3–5 working days.", "Express delivery costs £5."]


def test_no_followup_without_an_earlier_question_or_with_a_question_of_its_own():
    question = _user("How long does card delivery take?")
    answer = _bot("A new card arrives within 3–5 working days.", "card-delivery")
    assert answers.followup_context([]) is None
    assert answers.followup_context([_user("and what does express cost?")]) is None  # nothing before it
    # a question that stands on its own
    assert answers.followup_context([question, answer, _user("How do I freeze my card in the app?")]) is None
    # a new session forgets the earlier question
    assert answers.followup_context([question, answer, {"event": "session_started"},
                                     _user("and what does express cost?")]) is None
    # a button's payload is not the earlier question
    assert answers.followup_context([_user("/card_arrival"), _user("and what does express cost?")]) is None
    # the same fragment after the question continues it
    assert answers.followup_context([question, answer, _user("and what does express cost?")]) is not None


# -- extractive answers from the real index ------------------------------------------


@pytest.fixture(scope="module")
def real_sentences():
    """The sentence index of the real knowledge pages (build/knowledge, `make setup`)."""
    try:
        return llm_reply.load_sentences()
    except Exception as error:  # noqa: BLE001 - say how to build it
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def encoder():
    from assistant.encoder import DEFAULT_MODEL_DIR, SentenceEncoder

    return SentenceEncoder(DEFAULT_MODEL_DIR, threads=1, quantized=False)


@pytest.fixture
def ask(encoder, monkeypatch):
    """Send the turns of one conversation through llm_reply.answer (extractive only) with
    the real index and the encoder's vectors; the answers, and the texts embedded per turn."""
    try:
        llm_reply.load_index()
    except Exception as error:  # noqa: BLE001 - say how to build it
        pytest.fail(str(error))
    embedded: List[List[str]] = []

    async def embed(texts, **_):
        embedded.append(list(texts))
        return generator.Embeddings(np.asarray(encoder.encode(list(texts), 32)), 0)

    monkeypatch.setattr(generator, "embed", embed)

    def run(*turns: str):
        async def conversation():
            events: List[Dict[str, Any]] = [{"event": "session_started"}]
            replies = []
            for text in turns:
                events.append({"event": "user", "text": text})
                reply = await llm_reply.answer(events, candidates=0)
                replies.append(reply)
                events.append({"event": "bot", "text": reply.text,
                               "metadata": {"source": reply.source, "sources": reply.sources}})
            return replies

        return asyncio.run(conversation()), embedded

    return run


def _verbatim(reply: llm_reply.Answer) -> None:
    """Every sentence of an extractive answer is a sentence of its page, word for word."""
    sentences = llm_reply.load_sentences()
    index = sentences.index
    page_texts = {sentences.texts[row] for row in range(len(sentences.texts))
                  if index.passages[int(index.sentence_rows[row])].page_id == reply.extract.page_id}
    assert reply.extract.sentences and set(reply.extract.sentences) <= page_texts
    assert reply.text == llm_reply.cite(" ".join(reply.extract.sentences), index.titles[reply.extract.page_id])


@pytest.mark.parametrize("question, page, fact", [
    ("how much does express delivery cost?", "card-delivery", r"£5\b"),
    ("How many disposable cards am I allowed to make each day?", "virtual-cards", r"up to 5 disposable"),
])
def test_a_question_the_pages_answer_gets_the_sentence_that_states_the_fact(ask, question, page, fact):
    [reply], _ = ask(question)
    assert reply.source == "knowledge" and reply.sources == [page]
    assert reply.extract.answerable and reply.extract.why == ""
    assert re.search(fact, reply.text), reply.text
    gate = answers.load_gate()
    assert reply.extract.probability >= gate.threshold > 0
    assert set(reply.extract.features) == set(answers.GATE_FEATURES)
    _verbatim(reply)


@pytest.mark.parametrize("question, page, fact, answered", [
    ("I have to send £28,000 to my solicitor today for the flat, can I do it all in one transfer?",
     "transfer-problems", r"£25,000", True),
    # the right sentence is found, but the gate still refuses: bike, Saturday and cash machine
    # are words of the customer's story that the page lacks
    ("I need £650 in cash for a bike on Saturday, can I get it all out of a cash machine?",
     "atm-withdrawals", r"£500", False),
])
def test_a_situation_that_implies_the_question_finds_the_fact_through_the_pages_fact_questions(
        ask, monkeypatch, question, page, fact, answered):
    """The customer describes a situation and leaves the question implied: the sentence that
    answers shares few words with it, and is ranked first through the customer questions its
    page lists for it (`facts:`; these messages are not among them)."""
    assert question not in {q for q, _, _ in knowledge.load_facts()}
    [reply], _ = ask(question)
    assert (reply.source == "knowledge") is answered, reply.text
    assert reply.extract.page_id == page and reply.extract.best.fact > reply.extract.best.similarity + 0.2
    if answered:
        assert re.search(fact, reply.text) and reply.sources == [page], reply.text
        _verbatim(reply)
    monkeypatch.setattr(settings, "ANSWER_GATE", "off")
    [reply], _ = ask(question)
    assert re.search(fact, reply.text), reply.text
    # ranked by the sentences' own words alone, the fact is not what comes first (it may
    # still join the reply as the page's sentence of the kind asked for: compose)
    monkeypatch.setattr(settings, "ANSWER_FACT_WEIGHT", 0.0)
    [reply], _ = ask(question)
    assert not re.search(fact, llm_reply.load_sentences().texts[reply.extract.best.row]), reply.text


@pytest.mark.parametrize("question", [
    "what's the interest rate on your savings account?",
    "Do you offer mortgages for first-time buyers?",
    "Can I get a car loan from Lakeside?",
])
def test_a_question_no_page_answers_is_not_answered(ask, question):
    [reply], _ = ask(question)
    assert reply.source == "no_knowledge" and reply.text == llm_reply.NO_KNOWLEDGE_TEXT
    assert not reply.extract.answerable and reply.extract.sentences == []
    assert reply.extract.why == "gate" and reply.extract.probability < answers.load_gate().threshold
    assert reply.sources == []


def test_a_sentence_that_moves_money_the_other_way_is_never_chosen(ask):
    # "get out" is taking money out: the £1,000 a day of cash paid in is not its answer
    [reply], _ = ask("how much cash can i get out in one day")
    assert reply.source == "knowledge" and re.search(r"£500\b", reply.text), reply.text
    assert not any(answers.money_direction(s) == {"in"} for s in reply.extract.sentences)
    # a follow-up that names no way keeps the earlier question's
    (_, reply), _ = ask("how much cash can i take out a day", "and is it free?")
    assert reply.followup and re.search(r"free up to £200", reply.text), reply.text
    assert not any(answers.money_direction(s) == {"in"} for s in reply.extract.sentences)
    # the Post Office page says how to pay cash in; nothing says you can take cash out there
    question = "Can I take cash out at a Post Office counter with my Lakeside card?"
    [reply], _ = ask(question)
    assert reply.source in ("no_knowledge", "clarify") and not reply.extract.answerable
    sentences = llm_reply.load_sentences()
    best = sentences.texts[reply.extract.best.row]
    assert not answers.opposite_direction(question, best) and "Post Office" not in best


@pytest.mark.parametrize("question, why", [
    # the pages state a fee and a daily maximum for transfers, never a minimum
    ("Is there a minimum amount for an international transfer?", "minimum"),
])
def test_a_sentence_on_the_topic_that_does_not_answer_is_refused(ask, monkeypatch, question, why):
    # a gate that lets everything through: these checks refuse on their own
    monkeypatch.setattr(answers, "_gate", dataclasses.replace(answers.load_gate(), threshold=0.0))
    [reply], _ = ask(question)
    assert reply.source in ("no_knowledge", "clarify") and not reply.extract.answerable
    assert reply.extract.why == why


def test_which_way_money_moves():
    assert answers.money_direction("Can I take cash out at the Post Office?") == {"out"}
    assert answers.money_direction("To pay in cash, show the barcode at the Post Office.") == {"in"}
    assert answers.money_direction("what details do I give someone sending me money?") == {"in"}
    assert answers.money_direction("how much can I spend per day?") == {"out"}
    assert answers.money_direction("how much cash can i get out in one day") == {"out"}
    assert answers.money_direction("You can top up by card up to £5,000 per day.") == {"in"}
    assert answers.money_direction("Can I freeze my card?") == set()
    assert answers.money_direction("How do I pay cash into my account?") == {"in"}
    assert answers.money_direction("I want to put £300 into my Lakeside account") == {"in"}
    assert answers.money_direction("can I get it all out of a cash machine?") == {"out"}
    assert answers.opposite_direction("what's my daily limit for spending online?",
                                      "You can top up by card up to £5,000 per day.")
    assert not answers.opposite_direction("what's the daily top-up limit?", "You can top up by card up to £5,000 per day.")
    assert not answers.opposite_direction("Can I freeze my card?", "You can top up by card.")


@pytest.mark.parametrize("first, then, page, fact", [
    ("How do I add my card to Google Pay?", "does it cost anything?", "apple-pay-google-pay",
     r"Adding a card to a wallet is free"),
    ("How do I pay in a cheque?", "and how long until it clears?", "cash-and-cheque-deposits",
     r"clears? within 2 working days"),
    # "daily" is "per day"; "into" pays in: not the £500 a day of cash taken out
    ("How do I pay cash into my account?", "is there a daily limit?", "cash-and-cheque-deposits",
     r"£1,000 in cash per day"),
])
def test_a_followup_is_answered_from_the_earlier_questions_page(ask, first, then, page, fact):
    (before, reply), embedded = ask(first, then)
    assert before.source == "knowledge" and before.sources == [page] and not before.followup
    assert reply.source == "knowledge" and reply.sources == [page] and reply.followup
    assert re.search(fact, reply.text), reply.text
    _verbatim(reply)
    # the query was both messages, and the follow-up alone
    assert embedded[-1] == [f"{first} {then}", then]
    # on its own the fragment names no topic: not answered
    [alone], _ = ask(then)
    assert alone.source == "no_knowledge" and not alone.followup


def test_the_sentence_index_weighs_words_by_how_many_pages_use_them():
    try:
        sentences = llm_reply.load_sentences()
    except Exception as error:  # noqa: BLE001 - say how to build it
        pytest.fail(str(error))
    index = sentences.index
    assert len(sentences.texts) == len(index.sentence_rows) == len(sentences.words)
    assert set(sentences.page_vocab) == set(index.titles)
    # a word no page uses weighs ANSWER_UNKNOWN_WORD_WEIGHT; a rare one more than a common one
    [express], [card], [mortgage] = (answers.content_words(w) for w in ("express", "card", "mortgage"))
    assert sentences.idf(mortgage) == settings.ANSWER_UNKNOWN_WORD_WEIGHT
    assert sentences.idf(express) > sentences.idf(card) > 0
    # coverage: the IDF-weighted share of the words the page holds
    assert sentences.coverage(answers.content_words("express delivery"), "card-delivery") == 1.0
    assert sentences.coverage(answers.content_words("mortgage"), "card-delivery") == 0.0
    half = sentences.coverage(answers.content_words("express mortgage"), "card-delivery")
    assert half == pytest.approx(sentences.idf(express) / (sentences.idf(express) + sentences.idf(mortgage)))
    assert sentences.coverage([], "card-delivery") == 1.0  # nothing asked, nothing missing


def test_a_longer_message_that_refers_back_is_read_in_context_when_it_cannot_stand_alone(ask):
    first, then = "How long does card delivery take?", "I'm in Spain for work at the moment though, what would it be for me?"
    assert not answers.is_elliptical(then) and answers.leans_on_context(then)
    (before, reply), embedded = ask(first, then)
    assert before.sources == ["card-delivery"]
    assert reply.source == "knowledge" and reply.followup and reply.sources == ["card-delivery"]
    assert re.search(r"(EEA|European Economic Area)[^.]*(10|ten) working days", reply.text), reply.text
    _verbatim(reply)
    # read alone first, then in context (a country named adds where it is: "elsewhere in the EEA")
    assert len(embedded[-2]) == 1 and embedded[-2][0].startswith(then)
    assert embedded[-1][0].startswith(f"{first} {then}") and embedded[-1][1] == then
    [alone], _ = ask(then)
    assert alone.source == "no_knowledge" and not alone.followup


@pytest.mark.parametrize("text, leans", [
    ("my son is 15 though, is there anything for him?", True),
    ("do i need to do anything with it when it comes?", True),
    ("what about my partner instead", True),
    ("How long does a bank transfer to Spain take to arrive?", False),
    ("I want to open an account for my business, what documents do you need from me?", False),
    ("", False),
])
def test_which_messages_may_lean_on_the_conversation(text, leans):
    assert answers.leans_on_context(text) is leans


# -- the learned gate ----------------------------------------------------------------


def _records(rows):
    """bench.gate records of single readings: (set, kind, coverage, right)."""
    features = dict.fromkeys(answers.GATE_FEATURES, 0.5)
    return [{"set": s, "kind": kind, "routed": False, "form_intent": False,
             "readings": [{"features": {**features, "coverage": coverage}, "right": right}]}
            for s, kind, coverage, right in rows]


def test_the_gate_is_fitted_to_pass_right_answers_and_refuse_the_rest():
    from bench import gate as bench_gate

    rows = [(f"s{i % 2}", "answerable", 0.8 + 0.01 * i, True) for i in range(10)]
    rows += [(f"s{i % 2}", "answerable", 0.3 + 0.01 * i, False) for i in range(4)]
    rows += [(f"s{i % 2}", "unanswerable", 0.2 + 0.02 * i, False) for i in range(6)]
    records = _records(rows)
    fitted = answers.Gate(**bench_gate.fit(records))
    counts = bench_gate.outcomes(records, lambda f: fitted.probability(f) >= fitted.threshold)
    assert counts["answerable"] == {"correct": 10, "refused": 4}
    assert counts["unanswerable"] == {"honest": 6}
    assert fitted.probability({**records[0]["readings"][0]["features"], "coverage": 1.0}) > fitted.probability(
        {**records[0]["readings"][0]["features"], "coverage": 0.0})
    # each set scored by a gate fitted on the other one
    held = bench_gate.leave_one_set_out(records, ["s0", "s1"])
    assert sum(held["answerable"].values()) == 14 and sum(held["unanswerable"].values()) == 6


def test_the_gate_learns_from_the_question_and_sentence_embeddings_which_answers_are_right():
    """`match`: a model over answers.pair_features, fitted with the gate. Here only the
    embeddings tell right from wrong (every other figure is the same), as when a sentence
    on the topic does not answer what was asked."""
    from bench import gate as bench_gate

    rng = np.random.default_rng(7)
    right_way, wrong_way = answers.unit(rng.normal(size=384)), answers.unit(rng.normal(size=384))

    def pair(way):
        question = answers.unit(rng.normal(size=384))
        return answers.pair_features(question, answers.unit(question + 2 * way + 0.3 * rng.normal(size=384)))

    rows = [(f"s{i % 3}", "answerable", True, right_way) for i in range(30)]
    rows += [(f"s{i % 3}", "unanswerable", False, wrong_way) for i in range(30)]
    features = dict.fromkeys(answers.GATE_FEATURES, 0.5)
    records = [{"set": s, "kind": kind, "routed": False, "form_intent": False,
                "readings": [{"features": dict(features), "right": right, "pair": pair(way)}]}
               for s, kind, right, way in rows]
    fitted = bench_gate.fit(records)
    assert len(fitted["match_coef"]) == 4 * 384
    gate = answers.Gate(**fitted)
    assert gate.match(pair(right_way)) > 0 > gate.match(pair(wrong_way))
    assert gate.probability({**features, "match": gate.match(pair(right_way))}) >= gate.threshold \
        > gate.probability({**features, "match": gate.match(pair(wrong_way))})
    # each set left out is scored by a match model fitted on the other two
    held = bench_gate.leave_one_set_out(records, ["s0", "s1", "s2"])
    assert held["answerable"] == {"correct": 30} and held["unanswerable"] == {"honest": 30}
    # embeddings of another size (another EMBEDDINGS_MODEL) are refused with what to do
    with pytest.raises(ValueError, match="refit"):
        gate.match(answers.pair_features(np.ones(8), np.ones(8)))


def test_a_gate_fitted_on_other_features_is_refused(tmp_path):
    import json

    gate = json.loads(settings.ANSWER_GATE_FILE.read_text())
    assert answers.Gate.load(settings.ANSWER_GATE_FILE).features == list(answers.GATE_FEATURES)
    gate["features"] = gate["features"][:-1]
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    with pytest.raises(ValueError, match="refit"):
        answers.Gate.load(tmp_path / "gate.json")
    # a gate without its match model
    gate = json.loads(settings.ANSWER_GATE_FILE.read_text())
    del gate["match_coef"]
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    with pytest.raises(ValueError, match="refit"):
        answers.Gate.load(tmp_path / "gate.json")


def test_an_unknown_gate_setting_is_refused():
    import os
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", "import assistant.settings"], capture_output=True, text=True,
                         env={**os.environ, "ANSWER_GATE": "maybe"}, cwd=settings.ROOT)
    assert run.returncode != 0 and "ANSWER_GATE must be one of learned, rules, off" in run.stderr


def test_an_answer_states_the_kind_of_fact_asked_for_when_its_page_has_it(ask, monkeypatch):
    """"How do I get a new one?" asks what to do: the sentence closest to the customer's
    story (why a cracked chip fails) is not enough, and the page's sentence that says where
    in the app joins it; with ANSWER_KIND_MARGIN 0 it does not."""
    question = "The chip on my card is cracked and terminals won't read it. How do I get a new one?"
    [reply], _ = ask(question)
    assert reply.source == "knowledge" and reply.sources == ["card-not-working"], reply.text
    assert "Card > Replace card" in reply.text and "cracked" in reply.text, reply.text
    _verbatim(reply)
    monkeypatch.setattr(settings, "ANSWER_KIND_MARGIN", 0.0)
    monkeypatch.setattr(settings, "ANSWER_GATE", "off")
    [reply], _ = ask(question)
    assert "Card > Replace card" not in reply.text, reply.text


def test_a_sentence_that_says_again_what_the_answer_says_is_not_sent_twice(ask):
    """Pages state a key fact in their summary and again in their section: the answer
    sends it once. A sentence with a figure of its own, or a short one whose words alone
    don't say it ("doesn't offer"), is no repeat."""
    chosen = ["From a UK account the money arrives within 1 working day, usually within minutes; "
              "from abroad it takes 1–3 working days."]
    assert answers.repeats("Transfers from UK accounts arrive within 1 working day, usually within minutes, "
                           "and transfers from abroad take 1–3 working days.", chosen)
    assert not answers.repeats("Transfers from UK accounts arrive within 2 working days, usually within minutes, "
                               "and transfers from abroad take 1–3 working days.", chosen)
    assert not answers.repeats("Lakeside doesn't offer credit cards.", ["Some hotels ask for a credit card."])
    # the whole pipeline: receiving-money states the times in its summary and again in a
    # section; both sentences scored high for this question (docs/transcripts.md §5 sent both)
    events = [{"event": "user", "text": "I'm moving my savings from my old bank to Lakeside with a normal bank "
                                        "transfer. How long will it take to land?"},
              {"event": "user", "text": '/choose_topic{"topic_page": "receiving-money"}'}]
    reply = asyncio.run(llm_reply.answer(events, candidates=0, page="receiving-money"))
    assert reply.source == "knowledge" and reply.sources == ["receiving-money"], reply.text
    assert reply.text.count("within 1 working day") == 1, reply.text
