"""Action server pieces: prompt building, the generator client's failure modes, and
action_llm_reply run on trackers built from events.

The client tests talk HTTP to small aiohttp servers that misbehave on purpose
(HTTP 500, a non-JSON body, no answer at all): failure modes the real generator
cannot be made to produce on demand. The action tests use a small index of a few
pages and a small OpenAI-compatible server whose embeddings are bags of words and
whose chat answers with the candidates a test gives it, so every decision of the
action is known in advance: which sentences of which page answer (assistant/answers.py),
when the gate refuses, how a follow-up continues the earlier question, and when a
generated candidate (LLM_CANDIDATES > 0) beats the extractive answer. The real index
and encoder are used in test_answers, the real generator in test_grounding and
test_stack_e2e.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import zlib

import numpy as np
import pytest
from aiohttp import web
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import llm_reply
from assistant import answers, knowledge, knowledge_build, reply, settings
from assistant import generator_client as generator
from assistant.prompt import build_prompt, recent_messages, system_prompt
from assistant.knowledge import Passage


def _user(text):
    return {"event": "user", "text": text}


def _bot(text):
    return {"event": "bot", "text": text}


def test_prompt_has_system_then_recent_turns_ending_with_the_user():
    events = [
        _user("old session"),
        {"event": "session_started"},
        _user("hi"),
        _bot("Hello! How can I help?"),
        {"event": "action", "name": "action_listen"},
        _user("/request_human"),
        _user("what is the tallest building?"),
    ]
    passage = Passage("fees", "Fees", "Transfer fees", "Transfers within the UK are free.")
    prompt = build_prompt(events, [passage])
    assert prompt[0] == {"role": "system", "content": system_prompt()}
    assert "Lakeside Bank" in prompt[0]["content"]
    assert prompt[1] == {
        "role": "user",
        "content": "Help article: Fees\nTransfers within the UK are free.\n\n"
        'Conversation so far:\nCustomer: """hi"""\nAssistant: Hello! How can I help?\n\n'
        'Customer question: """what is the tallest building?"""',
    }


def test_history_is_limited_and_long_messages_are_cut():
    events = [_user(f"message {i}") for i in range(10)] + [_user("x" * 5000)]
    history = recent_messages(events, limit=3)
    assert [m["content"][:9] for m in history] == ["message 8", "message 9", "x" * 9]
    assert len(history[-1]["content"]) == 1000


async def _serve(handler):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    # Handlers still running at cleanup (the silent one) are cancelled at once, not awaited.
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/v1"


def _chat_against(handler, timeout_s=5.0):
    async def scenario():
        runner, url = await _serve(handler)
        try:
            return await generator.chat([{"role": "user", "content": "hi"}], base_url=url, timeout_s=timeout_s)
        finally:
            await runner.cleanup()

    return asyncio.run(scenario())


def test_a_valid_answer_is_parsed():
    async def ok(request):
        body = await request.json()
        assert body["messages"][-1]["content"] == "hi"
        return web.json_response(
            {"model": "m", "choices": [{"message": {"role": "assistant", "content": " Hello "}}],
             "usage": {"completion_tokens": 2}}
        )

    reply = _chat_against(ok)
    assert reply.texts == ["Hello"] and reply.model == "m" and reply.completion_tokens == 2


@pytest.mark.parametrize(
    "handler_body, reason",
    [
        (lambda: web.json_response({"error": {"message": "boom"}}, status=500), "http 500"),
        (lambda: web.Response(text="<html>not json</html>"), "bad response: not JSON"),
        (lambda: web.json_response({"choices": []}), "empty reply"),
        (lambda: web.json_response({"choices": [{"message": {"content": "   "}}]}), "empty reply"),
        (lambda: web.json_response({"unexpected": True}), "bad response: no choices"),
    ],
)
def test_failures_become_generator_errors(handler_body, reason):
    async def handler(request):
        return handler_body()

    with pytest.raises(generator.GeneratorError) as error:
        _chat_against(handler)
    assert error.value.reason == reason


def test_a_silent_server_times_out_on_time():
    async def silent(request):
        await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(generator.GeneratorError) as error:
        _chat_against(silent, timeout_s=1.0)
    assert error.value.reason == "timeout"
    assert time.monotonic() - started < 3


def test_a_refused_connection_is_an_error():
    async def scenario():
        return await generator.chat([{"role": "user", "content": "hi"}], base_url="http://127.0.0.1:9/v1")

    with pytest.raises(generator.GeneratorError) as error:
        asyncio.run(scenario())
    assert error.value.reason.startswith("connection")


# -- action_llm_reply on trackers built from events ------------------------------------

PAGES = {
    "card-delivery": """---
id: card-delivery
title: Card delivery and tracking
intents:
  - card_arrival
---

## How long card delivery takes

A new Lakeside card usually arrives within 3–5 working days at a UK address. Delivery to an
address outside the UK takes up to 10 working days.

## Express delivery

Express delivery costs £5 and the card arrives the next working day at a UK address.
""",
    "fees": """---
id: fees
title: Fees
intents:
  - transfer_fee_charged
---

## Transfer fees

Transfers within the UK are free. International transfers have a fixed £3 fee, which is shown
before you confirm the transfer.
""",
}
# A page that states no amount (for the kind gate).
PIN_PAGE = """---
id: card-pin
title: Your card PIN
intents:
  - change_pin
---

## Changing your PIN

You can change your PIN at any Lakeside cash machine. Choose PIN services on the screen and follow the steps.
"""
STOP = {"a", "an", "the", "to", "of", "and", "or", "is", "it", "my", "i", "do", "does", "how", "at", "in", "on"}
MESSAGE_KEYS = {"buttons": [], "elements": [], "custom": {}, "template": None, "response": None, "image": None,
                "attachment": None}
HUMAN_BUTTONS = [{"title": "Talk to a person", "payload": "/request_human"}]
DELIVERY_QUESTION = "When will my new Lakeside card arrive? My card is 4111 1111 1111 1111."
REDACTED_QUESTION = "When will my new Lakeside card arrive? My card is [card number]."
DELIVERY_TITLE = "Card delivery and tracking"
GOOD = "A new Lakeside card usually arrives within 3–5 working days at a UK address."
ABROAD = "Delivery to an address outside the UK takes up to 10 working days."
EXPRESS = "Express delivery costs £5 and the card arrives the next working day at a UK address."
PIN = "You can change your PIN at any Lakeside cash machine."
# Generated candidates, judged against the extractive answer GOOD (figures 3 and 5):
FAITHFUL = "Your new Lakeside card usually arrives within 3–5 working days when it goes to a UK address."
OTHER_FIGURE = "A new Lakeside card usually arrives within 3–5 working days at a UK address, or 10 abroad."
MISSING_FIGURE = "A new Lakeside card usually arrives within a few working days at a UK address."
UNFAITHFUL = "Penguins swim 3–5 laps of their pool every single morning before breakfast."


def bag_of_words(text: str, dims: int = 512) -> np.ndarray:
    vector = np.zeros(dims, np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        if word not in STOP:
            vector[zlib.crc32(word.encode()) % dims] += 1
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def index_pages(directory, monkeypatch, pages):
    """These pages indexed with bag-of-words vectors, loaded as the action's index; its
    sentence index is built again from them (and their own front matter, not the real pages')."""
    for page, text in pages.items():
        (directory / f"{page}.md").write_text(text)
    index = knowledge_build.build(lambda texts: np.stack([bag_of_words(t) for t in texts]), directory,
                            nlu_file=directory / "no-examples.yml")
    monkeypatch.setattr(reply, "_index", index)
    monkeypatch.setattr(reply, "_sentences", None)
    monkeypatch.setattr(settings, "KNOWLEDGE_DIR", directory)
    monkeypatch.setattr(settings, "KNOWLEDGE_MIN_SCORE", 0.3)
    monkeypatch.setattr(settings, "LLM_MIN_SUPPORT", 0.3)
    # the learned gate is fitted on the real pages' embeddings; bag-of-words pages get the rules
    monkeypatch.setattr(settings, "ANSWER_GATE", "rules")
    return index


@pytest.fixture
def small_knowledge(tmp_path, monkeypatch):
    """Two pages indexed with bag-of-words vectors, loaded as the action's index. A second
    sentence joins the best one within 0.2 here: bag-of-words scores of these tiny pages
    are closer together than real embeddings' (the default margin is tuned on those)."""
    monkeypatch.setattr(settings, "ANSWER_SECOND_MARGIN", 0.2)
    return index_pages(tmp_path, monkeypatch, PAGES)


class FakeGenerator:
    """OpenAI-compatible: bag-of-words embeddings; chat answers with `candidates`, then
    with the lists of `rounds` for the requests after the first (HTTP 500 when
    `chat_fails`); `delay_s` before each."""

    def __init__(self, candidates, rounds=(), delay_s=0.0, chat_fails=False):
        self.replies = [candidates, *rounds]  # the last one answers any later request
        self.delay_s = delay_s
        self.chat_fails = chat_fails
        self.requests = []

    async def chat(self, request):
        body = await request.json()
        self.requests.append(("chat", body))
        await asyncio.sleep(self.delay_s)
        if self.chat_fails:
            return web.json_response({"error": {"message": "out of memory"}}, status=500)
        done = sum(kind == "chat" for kind, _ in self.requests) - 1
        texts = self.replies[min(done, len(self.replies) - 1)]
        return web.json_response({
            "model": "fake-model",
            "choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
                        for i, c in enumerate(texts)],
            "usage": {"prompt_tokens": 100, "completion_tokens": 42, "total_tokens": 142},
        })

    async def embeddings(self, request):
        body = await request.json()
        self.requests.append(("embeddings", body))
        data = [{"index": i, "embedding": bag_of_words(t).tolist()} for i, t in enumerate(body["input"])]
        return web.json_response({"model": "fake-embeddings", "data": data})


def run_action(events, candidates=(), monkeypatch=None, url=None, fake=None, intent="nlu_fallback", domain=None):
    """Run action_llm_reply on a tracker with these events (the last user message has
    `intent`); (returned events, messages, requests)."""
    fake = fake or FakeGenerator(list(candidates))

    async def scenario():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", fake.chat)
        app.router.add_post("/v1/embeddings", fake.embeddings)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        monkeypatch.setattr(settings, "GENERATOR_URL", url or f"http://127.0.0.1:{port}/v1")
        user = [e for e in events if e["event"] == "user"]
        latest = {"text": user[-1]["text"], "intent": {"name": intent, "confidence": 0.2}} if user else {}
        tracker = Tracker("tester", {}, latest, events, False, None, {}, "action_listen")
        dispatcher = CollectingDispatcher()
        try:
            returned = await llm_reply.ActionLLMReply().run(dispatcher, tracker, domain or {})
        finally:
            await runner.cleanup()
        return returned, dispatcher.messages

    returned, messages = asyncio.run(scenario())
    return returned, messages, fake.requests


def _pop_variable_parts(message):
    """Latency and retrieval scores vary with the machine: check their form, return the
    rest, the retrieval list and the gate (the gate's figures rounded, its flags exact)."""
    message = dict(message)
    if "llm" in message:
        message["llm"] = dict(message["llm"])
        assert isinstance(message["llm"].pop("latency_ms"), int)
    retrieval = message.pop("retrieval", [])
    ranks = [r.pop("score") + settings.KNOWLEDGE_LEXICAL_WEIGHT * r.pop("lexical")
             + settings.KNOWLEDGE_INTENT_WEIGHT * r.pop("intent") for r in retrieval]
    assert ranks == sorted(ranks, reverse=True, key=lambda rank: round(rank, 2))  # from rounded parts
    gate = message.pop("gate")
    assert set(gate) <= {"coverage", "retrieval", "followup", "refused"}
    assert 0.0 <= gate["coverage"] <= 1.0 and isinstance(gate["retrieval"], float)
    assert isinstance(gate["followup"], bool)
    return message, retrieval, gate


def _cited(text, title=DELIVERY_TITLE):
    return llm_reply.cite(text, title)


def test_an_answer_cites_its_page_on_a_line_of_its_own():
    assert llm_reply.cite("Transfers within the UK are free.", "Fees") == (
        "Transfers within the UK are free.\nSource: Fees")


def _answered(message):
    """The bot event Rasa stores for a message of the action (its metadata: source, sources)."""
    return {"event": "bot", "text": message["text"],
            "metadata": {k: message[k] for k in ("source", "sources") if k in message}}


def test_lexical_scores_favour_the_passage_with_the_rare_words():
    lexical = knowledge.Lexical([
        "Card delivery. Your card arrives in a plain white envelope within 3 to 5 working days.",
        "Card delivery. Track your card in the app; delivery takes 3 to 5 working days.",
        "Fees. International transfers have a fixed fee.",
    ])
    scores = lexical.scores("What does the envelope look like?")
    assert scores[0] == 1.0 and scores[1] == 0.0 and scores[2] == 0.0
    both = lexical.scores("how long does card delivery take")
    assert both[0] > 0 and both[1] > 0 and both[2] == 0.0 and max(both) == 1.0
    # stop words and unknown words alone match nothing
    assert not lexical.scores("how do I do it with the my").any()
    assert not lexical.scores("mortgage").any()
    assert not lexical.scores("").any()


def test_the_lexical_term_reorders_close_passages_only_by_its_weight(small_knowledge):
    query = bag_of_words("card delivery envelope")
    dense = small_knowledge.search(query, 3, lexical_weight=0.0)
    assert [h.lexical for h in dense] == [0.0, 0.0, 0.0]  # no text: no lexical score
    ranked = small_knowledge.search(query, 3, text="card delivery envelope", lexical_weight=0.1)
    keys = [h.score + 0.1 * h.lexical for h in ranked]
    assert keys == sorted(keys, reverse=True)
    assert {h.row for h in ranked} <= set(range(len(small_knowledge.passages)))
    assert max(h.lexical for h in ranked) == 1.0


def _ranking(*pairs):
    """Rasa's intent_ranking: (intent, confidence) pairs, best first."""
    return [{"name": name, "confidence": confidence} for name, confidence in pairs]


def test_intent_scores_sum_the_confidences_of_each_pages_intents(small_knowledge):
    assert small_knowledge.page_intents == {"card-delivery": ["card_arrival"], "fees": ["transfer_fee_charged"]}
    pages = [p.page_id for p in small_knowledge.passages]
    assert pages == ["card-delivery", "card-delivery", "fees"]
    scores = small_knowledge.intent_scores(_ranking(("nlu_fallback", 0.75), ("card_arrival", 0.6),
                                                    ("greet", 0.2), ("transfer_fee_charged", 0.1)))
    assert scores == pytest.approx([0.6, 0.6, 0.1])  # nlu_fallback and greet: no page lists them
    assert not small_knowledge.intent_scores(None).any()
    assert not small_knowledge.intent_scores([]).any()
    assert not small_knowledge.intent_scores(_ranking(("out_of_scope", 0.9))).any()


def test_the_intent_prior_reorders_pages_by_the_nlu_ranking(small_knowledge):
    question = "card transfer fee"
    query = bag_of_words(question)
    plain = small_knowledge.search(query, 3, text=question, lexical_weight=0.1, intent_weight=0.3)
    assert [h.passage.page_id for h in plain] == ["fees", "card-delivery", "card-delivery"]
    assert [h.intent for h in plain] == [0.0, 0.0, 0.0]  # no ranking: today's order
    assert [h.row for h in plain] == [h.row for h in small_knowledge.search(query, 3, text=question,
                                                                             lexical_weight=0.1, intent_weight=0)]
    nlu = _ranking(("card_arrival", 0.8), ("transfer_fee_charged", 0.1))
    ranked = small_knowledge.search(query, 3, text=question, lexical_weight=0.1, intent_ranking=nlu,
                                    intent_weight=0.3)
    assert [h.passage.page_id for h in ranked] == ["card-delivery", "card-delivery", "fees"]
    assert [h.intent for h in ranked] == pytest.approx([0.8, 0.8, 0.1])
    keys = [h.score + 0.1 * h.lexical + 0.3 * h.intent for h in ranked]
    assert keys == sorted(keys, reverse=True)
    # the prior reorders, it does not change the relevance score
    assert {h.row: h.score for h in ranked} == {h.row: h.score for h in plain}
    # with a small weight the dense and lexical scores still win
    small = small_knowledge.search(query, 3, text=question, lexical_weight=0.1, intent_ranking=nlu,
                                   intent_weight=0.05)
    assert small[0].passage.page_id == "fees"
    # the weight defaults to KNOWLEDGE_INTENT_WEIGHT
    assert [h.row for h in small_knowledge.search(query, 3, text=question, intent_ranking=nlu)] == [
        h.row for h in small_knowledge.search(query, 3, text=question, intent_ranking=nlu,
                                              intent_weight=settings.KNOWLEDGE_INTENT_WEIGHT)]


def test_the_action_ranks_with_the_last_user_messages_intent_ranking(small_knowledge, monkeypatch):
    """A question both pages could answer: the NLU's intent of it decides which does."""
    monkeypatch.setattr(settings, "KNOWLEDGE_INTENT_WEIGHT", 0.1)
    question = "Is delivery free in the UK?"
    _, without, requests = run_action([_user(question)], (), monkeypatch)
    assert [r["intent"] for r in without[0]["retrieval"]] == [0.0, 0.0, 0.0]
    message, retrieval, _ = _pop_variable_parts(without[0])
    assert message["source"] == "knowledge" and message["sources"] == ["card-delivery"]
    assert message["text"] == _cited(f"{ABROAD} {EXPRESS}")
    old = {**_user("where is my card"), "parse_data": {"intent_ranking": _ranking(("card_arrival", 0.9))}}
    latest = {**_user(question), "parse_data": {"intent": {"name": "nlu_fallback", "confidence": 0.75},
                                                "intent_ranking": _ranking(("nlu_fallback", 0.75),
                                                                           ("transfer_fee_charged", 0.9))}}
    events = [old, _bot("It's on its way."), latest]
    assert llm_reply.last_intent_ranking(events)[1]["name"] == "transfer_fee_charged"
    assert llm_reply.last_intent_ranking([old, _user(question)]) == []  # the latest message has none
    _, messages, requests = run_action(events, (), monkeypatch)
    assert [(r["page"], r["intent"]) for r in messages[0]["retrieval"]] == [
        ("fees", 0.9), ("card-delivery", 0.0), ("card-delivery", 0.0)]
    message, retrieval, _ = _pop_variable_parts(messages[0])
    assert message["source"] == "knowledge" and message["sources"] == ["fees"]
    assert message["text"] == _cited("Transfers within the UK are free.", "Fees")
    assert [kind for kind, _ in requests] == ["embeddings"]
    # the earlier message's intent (card_arrival) is not the prior of this one
    _, messages, _ = run_action([old, _bot("It's on its way."), _user(question)], (), monkeypatch)
    assert messages[0]["sources"] == ["card-delivery"]


def test_the_intent_prior_does_not_lift_a_page_over_the_no_knowledge_threshold(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "KNOWLEDGE_INTENT_WEIGHT", 0.3)
    football = {**_user("Who won the football match last night?"),
                "parse_data": {"intent_ranking": _ranking(("transfer_fee_charged", 0.95))}}
    _, messages, requests = run_action([football], (), monkeypatch)
    message, retrieval, gate = _pop_variable_parts(messages[0])
    assert message["source"] == "no_knowledge" and retrieval[0]["page"] == "fees"
    assert gate["refused"] == "retrieval" and gate["retrieval"] < settings.KNOWLEDGE_MIN_SCORE
    assert [kind for kind, _ in requests] == ["embeddings"]  # nothing generated


def test_the_answer_is_the_pages_own_sentence_with_its_title(small_knowledge, monkeypatch):
    events = [{"event": "session_started"}, _user("hello"), _bot("Hi! How can I help?"), _user(DELIVERY_QUESTION)]
    returned, messages, requests = run_action(events, (), monkeypatch)
    assert returned == []
    assert len(messages) == 1
    message, retrieval, gate = _pop_variable_parts(messages[0])
    assert message == {
        **MESSAGE_KEYS,
        "text": _cited(GOOD),
        "source": "knowledge",
        "sources": ["card-delivery"],
    }
    assert (retrieval[0]["page"], retrieval[0]["section"]) == ("card-delivery", "How long card delivery takes")
    assert gate["followup"] is False and "refused" not in gate
    assert gate["coverage"] >= settings.ANSWER_MIN_COVERAGE and gate["retrieval"] >= settings.KNOWLEDGE_MIN_SCORE
    # one request: the query's embedding, redacted; nothing generated (LLM_CANDIDATES is 0)
    assert requests == [("embeddings", {"model": settings.EMBEDDING_MODEL, "input": [REDACTED_QUESTION]})]
    assert "4111" not in json.dumps(requests)


def test_a_question_the_pages_do_not_answer_gets_an_honest_reply_and_a_person(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)  # even with generation on, nothing is generated
    returned, messages, requests = run_action([_user("Who won the football match last night?")], [GOOD],
                                              monkeypatch)
    assert returned == []
    message, retrieval, gate = _pop_variable_parts(messages[0])
    assert message == {**MESSAGE_KEYS, "text": llm_reply.NO_KNOWLEDGE_TEXT, "buttons": HUMAN_BUTTONS,
                       "source": "no_knowledge"}
    assert gate == {"coverage": 0.0, "retrieval": 0.0, "followup": False, "refused": "retrieval"}
    assert len(retrieval) == 3
    assert [kind for kind, _ in requests] == ["embeddings"]


def test_a_question_on_a_topic_the_page_lacks_is_refused_despite_shared_words(small_knowledge, monkeypatch):
    """Retrieval finds the delivery page (new, Lakeside, arrive), but a mortgage is on no
    page: the page does not cover the question."""
    _, messages, requests = run_action([_user("When does my new Lakeside mortgage arrive?")], (), monkeypatch)
    message, retrieval, gate = _pop_variable_parts(messages[0])
    assert message["source"] == "no_knowledge" and message["text"] == llm_reply.NO_KNOWLEDGE_TEXT
    assert retrieval[0]["page"] == "card-delivery" and gate["retrieval"] >= settings.KNOWLEDGE_MIN_SCORE
    assert gate["refused"] == "coverage" and gate["coverage"] < settings.ANSWER_MIN_COVERAGE
    # the same question about a card is answered from that page
    _, messages, _ = run_action([_user("When does my new Lakeside card arrive?")], (), monkeypatch)
    assert messages[0]["source"] == "knowledge" and messages[0]["text"] == _cited(GOOD)


def test_a_followup_is_answered_from_the_earlier_questions_page(small_knowledge, monkeypatch):
    first = [_user("how long does card delivery take?")]
    _, messages, _ = run_action(first, (), monkeypatch)
    assert messages[0]["source"] == "knowledge" and messages[0]["sources"] == ["card-delivery"]
    events = first + [_answered(messages[0]), _user("and what does express cost?")]
    _, messages, requests = run_action(events, (), monkeypatch)
    message, _, gate = _pop_variable_parts(messages[0])
    assert message == {**MESSAGE_KEYS, "text": _cited(EXPRESS), "source": "knowledge",
                       "sources": ["card-delivery"]}
    assert gate["followup"] is True and "refused" not in gate
    # the query is the earlier question and the follow-up; the follow-up alone is embedded too
    assert requests == [("embeddings", {
        "model": settings.EMBEDDING_MODEL,
        "input": ["how long does card delivery take? and what does express cost?", "and what does express cost?"]})]


def test_a_pronoun_followup_asks_about_the_earlier_topic(small_knowledge, monkeypatch):
    """"and what does it cost?" alone names no topic; after the delivery question it asks
    what delivery costs: the £5 sentence, not the fees page's £3."""
    first = [_user(DELIVERY_QUESTION)]
    _, messages, _ = run_action(first, (), monkeypatch)
    assert messages[0]["text"] == _cited(GOOD)
    events = first + [_answered(messages[0]), _user("and what does it cost?")]
    _, messages, requests = run_action(events, (), monkeypatch)
    message, _, gate = _pop_variable_parts(messages[0])
    assert message["source"] == "knowledge" and message["sources"] == ["card-delivery"]
    assert message["text"] == _cited(EXPRESS) and gate["followup"] is True
    # the earlier question goes into the query redacted, like the message itself
    assert requests[0][1]["input"] == [f"{REDACTED_QUESTION} and what does it cost?", "and what does it cost?"]
    assert "4111" not in json.dumps(requests)
    # on its own it is not answered
    _, messages, _ = run_action([_user("and what does it cost?")], (), monkeypatch)
    assert messages[0]["source"] == "no_knowledge"


def test_a_detail_after_a_question_continues_it(small_knowledge, monkeypatch):
    """An `inform` message ("outside the UK") after a question is a follow-up to it."""
    first = [_user("how long does card delivery take?")]
    _, messages, _ = run_action(first, (), monkeypatch)
    events = first + [_answered(messages[0]), _user("outside the UK")]
    _, messages, requests = run_action(events, (), monkeypatch, intent="inform")
    message, _, gate = _pop_variable_parts(messages[0])
    assert message["source"] == "knowledge" and gate["followup"] is True
    assert message["text"] == _cited(ABROAD)
    assert requests[0][1]["input"] == ["how long does card delivery take? outside the UK", "outside the UK"]


def test_a_bare_detail_with_nothing_to_continue_gets_the_inform_reply(small_knowledge, monkeypatch):
    returned, messages, requests = run_action([_user("£150 yesterday")], (), monkeypatch, intent="inform")
    assert returned == [] and requests == []
    assert messages == [{**MESSAGE_KEYS, "text": None, "template": "utter_inform", "response": "utter_inform",
                         "source": "intent"}]
    # an `inform` message that is a question is answered
    _, messages, _ = run_action([_user("When will my new Lakeside card arrive?")], (), monkeypatch, intent="inform")
    assert messages[0]["source"] == "knowledge" and messages[0]["text"] == _cited(GOOD)


def test_a_question_asking_an_amount_the_page_does_not_state_is_refused(tmp_path, monkeypatch):
    index_pages(tmp_path, monkeypatch, {**PAGES, "card-pin": PIN_PAGE})
    how_much = "How much does it cost to change my PIN at a Lakeside cash machine?"
    _, messages, _ = run_action([_user(how_much)], (), monkeypatch)
    message, retrieval, gate = _pop_variable_parts(messages[0])
    assert message == {**MESSAGE_KEYS, "text": llm_reply.NO_KNOWLEDGE_TEXT, "buttons": HUMAN_BUTTONS,
                       "source": "no_knowledge"}
    assert retrieval[0]["page"] == "card-pin" and gate["refused"] == "kind"
    # the page answers where, not how much
    _, messages, _ = run_action([_user("Can I change my PIN at a Lakeside cash machine?")], (), monkeypatch)
    assert messages[0]["source"] == "knowledge" and messages[0]["sources"] == ["card-pin"]
    assert messages[0]["text"] == _cited(PIN, "Your card PIN")
    # the kind gate was the only reason: without it, that sentence would answer "how much"
    monkeypatch.setattr(settings, "ANSWER_KIND_GATE", 0)
    _, messages, _ = run_action([_user(how_much)], (), monkeypatch)
    assert messages[0]["source"] == "knowledge" and messages[0]["text"] == _cited(PIN, "Your card PIN")


def test_a_faithful_generated_candidate_replaces_the_extractive_answer(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)
    events = [{"event": "session_started"}, _user("hello"), _bot("Hi! How can I help?"), _user(DELIVERY_QUESTION)]
    candidates = [
        "Your balance is £120, so the card is on its way.",
        FAITHFUL,
        "Call 0800 123 4567 to ask where your card is.",
    ]
    returned, messages, requests = run_action(events, candidates, monkeypatch)
    assert returned == []
    message, _, gate = _pop_variable_parts(messages[0])
    assert message == {
        **MESSAGE_KEYS,
        "text": _cited(FAITHFUL),
        "source": "llm",
        "sources": ["card-delivery"],
        "llm": {"model": "fake-model", "completion_tokens": 42, "candidates": 3, "rounds": 1,
                "rejected": ["account_claim", "personal_data"], "dropped": []},
    }
    assert "refused" not in gate
    # query embedding, one chat request for all candidates, one embedding call for the
    # survivors and the extractive answer they are judged against
    assert [kind for kind, _ in requests] == ["embeddings", "chat", "embeddings"]
    query, chat, survivors = (body for _, body in requests)
    assert query["input"] == [REDACTED_QUESTION]
    assert chat["n"] == 3 and chat["temperature"] == settings.LLM_CANDIDATE_TEMPERATURE
    assert chat["seed"] == zlib.crc32(REDACTED_QUESTION.encode())
    assert chat["messages"][0] == {"role": "system", "content": system_prompt()}
    prompt = chat["messages"][1]["content"]
    assert prompt.startswith(f"Help article: {DELIVERY_TITLE}\n{GOOD}")
    assert "Transfers within the UK" not in prompt  # the answer's page only
    assert prompt.endswith(f'Customer question: """{REDACTED_QUESTION}"""')
    assert "4111" not in json.dumps(requests)
    assert survivors["input"] == [FAITHFUL, GOOD]


def test_a_generated_candidate_less_faithful_than_the_extractive_answer_loses(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)
    from prometheus_client import REGISTRY

    def rejected(reason):
        return REGISTRY.get_sample_value("action_server_llm_rejected_candidates_total", {"reason": reason}) or 0.0

    reasons = ["other_figure", "misses_fact", "new_words"]
    before = [rejected(r) for r in reasons]
    # the second round gets the same replies: nothing new to judge
    _, messages, requests = run_action([_user(DELIVERY_QUESTION)], [OTHER_FIGURE, MISSING_FIGURE, UNFAITHFUL],
                                       monkeypatch)
    message, _, _ = _pop_variable_parts(messages[0])
    assert message == {
        **MESSAGE_KEYS,
        "text": _cited(GOOD),
        "source": "knowledge",
        "sources": ["card-delivery"],
        "llm": {"model": "fake-model", "completion_tokens": 84, "candidates": 3, "rounds": 2,
                "rejected": reasons, "dropped": []},
    }
    assert [rejected(r) for r in reasons] == [b + 1 for b in before]
    assert [kind for kind, _ in requests] == ["embeddings", "chat", "embeddings", "chat"]
    assert requests[2][1]["input"] == [OTHER_FIGURE, MISSING_FIGURE, UNFAITHFUL, GOOD]


@pytest.mark.parametrize("text, support, reason", [
    (FAITHFUL, 0.9, None),
    (OTHER_FIGURE, 0.9, "other_figure"),
    (MISSING_FIGURE, 0.9, "misses_fact"),
    ("A new Lakeside card usually arrives within 3–5 working days at a UK address: see Card > Track delivery.",
     0.9, "other_place"),
    ("A new Lakeside card usually arrives within 3–5 working days, but it can vary depending on your postcode.",
     0.9, "new_words"),
    (FAITHFUL, 0.5, "unfaithful"),
])
def test_what_makes_a_generated_candidate_less_faithful(text, support, reason):
    candidate = llm_reply.Candidate(text, support=support)
    assert llm_reply.faithful(candidate, GOOD, [GOOD, DELIVERY_QUESTION]) == reason


def test_a_candidates_invented_figures_and_repeats_are_dropped_before_the_checks(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)
    candidates = [
        f"{FAITHFUL} Express delivery costs £15 and takes 2 days. {FAITHFUL}",  # one invented figure, one loop
        "Express delivery costs £15. It takes 2 days.",  # nothing true is left: rejected whole
    ]
    from prometheus_client import REGISTRY

    def dropped(reason):
        return REGISTRY.get_sample_value("action_server_llm_dropped_sentences_total", {"reason": reason}) or 0.0

    before = dropped("unsupported_number"), dropped("repeated_sentence")
    _, messages, requests = run_action([_user(DELIVERY_QUESTION)], candidates, monkeypatch)
    assert (dropped("unsupported_number"), dropped("repeated_sentence")) == (before[0] + 1, before[1] + 1)
    message, _, _ = _pop_variable_parts(messages[0])
    assert message["source"] == "llm"
    assert message["text"] == _cited(FAITHFUL)
    assert message["llm"]["dropped"] == ["unsupported_number", "repeated_sentence"]
    assert message["llm"]["rejected"] == ["unsupported_number"]
    assert requests[-1][1]["input"] == [FAITHFUL, GOOD]  # the repaired text is what is judged


@pytest.mark.parametrize("penalty", [0.0, 0.4])
def test_the_frequency_penalty_is_sent_only_when_set(small_knowledge, monkeypatch, penalty):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)
    monkeypatch.setattr(settings, "LLM_FREQUENCY_PENALTY", penalty)
    _, messages, requests = run_action([_user(DELIVERY_QUESTION)], [FAITHFUL], monkeypatch)
    assert messages[0]["source"] == "llm"
    [chat] = [body for kind, body in requests if kind == "chat"]
    if penalty:
        assert chat["frequency_penalty"] == penalty
    else:
        assert "frequency_penalty" not in chat


def test_a_second_round_of_candidates_when_every_one_is_rejected(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)
    first = ["Your balance is £120.", "Penguins enjoy cold water and eat plenty of fresh fish every single day."]
    fake = FakeGenerator(first, rounds=[["Call 0800 123 4567 to ask.", FAITHFUL]])
    from prometheus_client import REGISTRY

    def retries():
        return REGISTRY.get_sample_value("action_server_llm_retry_rounds_total") or 0.0

    before = retries()
    _, messages, requests = run_action([_user(DELIVERY_QUESTION)], monkeypatch=monkeypatch, fake=fake)
    assert retries() == before + 1
    message, _, _ = _pop_variable_parts(messages[0])
    assert message["source"] == "llm" and message["sources"] == ["card-delivery"]
    assert message["text"] == _cited(FAITHFUL)
    assert message["llm"] == {"model": "fake-model", "completion_tokens": 84, "candidates": 4, "rounds": 2,
                              "rejected": ["account_claim", "misses_fact", "personal_data"], "dropped": []}
    # the first round's survivor is judged with it; the second round is sampled with another seed
    assert [kind for kind, _ in requests] == ["embeddings", "chat", "embeddings", "chat", "embeddings"]
    once, again = (body for kind, body in requests if kind == "chat")
    assert again["seed"] == once["seed"] + 1 and again["n"] == once["n"] == 3
    assert again["messages"] == once["messages"]


def test_a_greedy_single_candidate_is_sampled_in_the_second_round(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 1)
    fake = FakeGenerator(["Your balance is £120."], rounds=[[FAITHFUL]])
    _, messages, requests = run_action([_user(DELIVERY_QUESTION)], monkeypatch=monkeypatch, fake=fake)
    assert messages[0]["source"] == "llm"
    once, again = (body for kind, body in requests if kind == "chat")
    assert once["n"] == again["n"] == 1
    assert once["temperature"] == settings.LLM_TEMPERATURE and "seed" not in once
    assert again["temperature"] == settings.LLM_CANDIDATE_TEMPERATURE
    assert again["seed"] == zlib.crc32(REDACTED_QUESTION.encode()) + 1


@pytest.mark.parametrize("retry_rounds, delay_s, timeout_s", [(0, 0.0, 30.0), (1, 0.6, 1.0)],
                         ids=["retries-off", "no-time-left"])
def test_no_second_round_when_off_or_out_of_time(small_knowledge, monkeypatch, retry_rounds, delay_s, timeout_s):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)
    monkeypatch.setattr(settings, "LLM_RETRY_ROUNDS", retry_rounds)
    monkeypatch.setattr(settings, "GENERATOR_TIMEOUT_S", timeout_s)
    fake = FakeGenerator(["Your balance is £120."], rounds=[[FAITHFUL]], delay_s=delay_s)
    _, messages, requests = run_action([_user(DELIVERY_QUESTION)], monkeypatch=monkeypatch, fake=fake)
    message, _, _ = _pop_variable_parts(messages[0])
    assert message["source"] == "knowledge" and message["text"] == _cited(GOOD)
    assert message["llm"]["rounds"] == 1 and message["llm"]["rejected"] == ["account_claim"]
    assert [kind for kind, _ in requests] == ["embeddings", "chat"]


def test_a_failed_generation_still_sends_the_extractive_answer(small_knowledge, monkeypatch):
    monkeypatch.setattr(settings, "LLM_CANDIDATES", 3)
    fake = FakeGenerator([FAITHFUL], chat_fails=True)
    returned, messages, requests = run_action([_user(DELIVERY_QUESTION)], monkeypatch=monkeypatch, fake=fake)
    assert returned == []
    message, _, _ = _pop_variable_parts(messages[0])
    assert message == {**MESSAGE_KEYS, "text": _cited(GOOD), "source": "knowledge",
                       "sources": ["card-delivery"]}
    assert [kind for kind, _ in requests] == ["embeddings", "chat"]


def test_generator_down_gives_the_fallback_template(small_knowledge, monkeypatch):
    returned, messages, _ = run_action([_user(DELIVERY_QUESTION)], [GOOD], monkeypatch, url="http://127.0.0.1:9/v1")
    assert returned == []
    assert len(messages) == 1
    error = messages[0].pop("llm_error")
    assert error.startswith("connection")
    assert messages[0] == {**MESSAGE_KEYS, "text": None, "template": "utter_llm_fallback",
                           "response": "utter_llm_fallback", "source": "fallback"}


def test_no_user_text_gives_the_fallback_template(small_knowledge, monkeypatch):
    returned, messages, requests = run_action([_user("")], [GOOD], monkeypatch)
    assert returned == [] and requests == []
    assert messages == [{**MESSAGE_KEYS, "text": None, "template": "utter_llm_fallback",
                         "response": "utter_llm_fallback", "source": "fallback", "llm_error": "no user text"}]


def test_the_answer_carries_the_buttons_of_the_intents_own_response(small_knowledge, monkeypatch):
    buttons = [{"title": "Track my card", "payload": "/card_arrival"},
               {"title": "Talk to a person", "payload": "/request_human"}]
    domain = {"responses": {
        "utter_card_arrival": [{"text": "Cards arrive in 3–5 working days.", "buttons": buttons}],
        "utter_greet": [{"text": "Hi!"}],
    }}
    _, messages, _ = run_action([_user(DELIVERY_QUESTION)], (), monkeypatch, intent="card_arrival", domain=domain)
    message, _, _ = _pop_variable_parts(messages[0])
    assert message == {**MESSAGE_KEYS, "text": _cited(GOOD), "buttons": buttons,
                       "source": "knowledge", "sources": ["card-delivery"]}
    # an intent whose response has no buttons, or no response: none
    for intent in ("greet", "nlu_fallback"):
        _, messages, _ = run_action([_user(DELIVERY_QUESTION)], (), monkeypatch, intent=intent, domain=domain)
        assert messages[0]["buttons"] == [] and messages[0]["source"] == "knowledge"
    # the honest reply offers a person, not the intent's buttons
    _, messages, _ = run_action([_user("Who won the football match last night?")], (), monkeypatch,
                                intent="card_arrival", domain=domain)
    assert messages[0]["source"] == "no_knowledge" and messages[0]["buttons"] == HUMAN_BUTTONS
    assert llm_reply.intent_buttons({}, "card_arrival") == []
    assert llm_reply.intent_buttons(domain, None) == []
    assert llm_reply.intent_buttons(domain, "card_arrival") == buttons


def test_a_stale_index_is_refused(tmp_path):
    for page, text in PAGES.items():
        (tmp_path / f"{page}.md").write_text(text)
    path = tmp_path / "index.npz"
    embed = lambda texts: np.stack([bag_of_words(t) for t in texts])  # noqa: E731
    knowledge_build.build(embed, tmp_path, model="m", nlu_file=tmp_path / "none.yml").save(path)
    index, why = knowledge.load_current(path, tmp_path, "m", tmp_path / "none.yml")
    assert index is not None and why == "" and len(index.passages) == 3
    assert index.page_intents == {"card-delivery": ["card_arrival"], "fees": ["transfer_fee_charged"]}
    (tmp_path / "fees.md").write_text(PAGES["fees"].replace("£3", "£4"))
    index, why = knowledge.load_current(path, tmp_path, "m", tmp_path / "none.yml")
    assert index is None and "stale" in why
    assert knowledge.load_current(path, tmp_path, "other-model", tmp_path / "none.yml")[0] is None
    assert "does not exist" in knowledge.load_current(tmp_path / "nope.npz", tmp_path, "m")[1]


def test_a_question_about_one_fact_matches_the_sentence_that_states_it(tmp_path):
    (tmp_path / "card-delivery.md").write_text(PAGES["card-delivery"])
    embed = lambda texts: np.stack([bag_of_words(t) for t in texts])  # noqa: E731
    index = knowledge_build.build(embed, tmp_path, model="m", nlu_file=tmp_path / "none.yml")
    first = index.passages[0]
    assert first.sentence_texts() == [
        "Card delivery and tracking. A new Lakeside card usually arrives within 3–5 working days at a UK address.",
        "Card delivery and tracking. Delivery to an address outside the UK takes up to 10 working days.",
    ]
    assert list(index.sentence_rows) == [0, 0, 1]  # the express section is one sentence
    query = bag_of_words("delivery to an address outside the UK")
    section = float(knowledge.unit(index.vectors[0]) @ query)
    sentence = float(knowledge.unit(bag_of_words(first.sentence_texts()[1])) @ query)
    assert sentence > section
    hit = index.search(query, 1, intent_weight=0.0, lexical_weight=0.0)[0]
    assert hit.row == 0 and hit.similarity == pytest.approx(sentence, abs=1e-6)
    assert hit.score == pytest.approx(sentence, abs=1e-6)  # no example questions: the page term is the same
    # the sentences survive a save and a load
    index.save(tmp_path / "index.npz")
    loaded = knowledge.KnowledgeIndex.load(tmp_path / "index.npz")
    assert list(loaded.sentence_rows) == [0, 0, 1]
    assert loaded.search(query, 1, intent_weight=0.0, lexical_weight=0.0)[0].similarity == pytest.approx(hit.similarity)


def test_pages_split_into_passages(tmp_path):
    (tmp_path / "card-delivery.md").write_text(PAGES["card-delivery"])
    passages = knowledge.load_passages(tmp_path)
    assert [(p.page_id, p.title, p.heading) for p in passages] == [
        ("card-delivery", "Card delivery and tracking", "How long card delivery takes"),
        ("card-delivery", "Card delivery and tracking", "Express delivery"),
    ]
    assert passages[0].text == ("A new Lakeside card usually arrives within 3–5 working days at a UK address. "
                                "Delivery to an address outside the UK takes up to 10 working days.")


def test_a_question_about_one_fact_leads_to_the_sentence_that_states_it(tmp_path, monkeypatch):
    """The questions a page lists under `facts:` belong to one of its sentences: a message
    worded like them ranks that sentence first although it shares no content word with it,
    and they are examples of the page for retrieval. A `sentence:` that names no sentence of
    the page, or several, stops the build."""
    express = "Express delivery costs £5 and the card arrives the next working day at a UK address."
    facts = ('facts:\n  - sentence: "Express delivery costs £5"\n    questions:\n'
             '      - "off on holiday tomorrow, can it reach me quicker"\n      - "  faster   shipping price"\n')
    page = PAGES["card-delivery"].replace("  - card_arrival\n", "  - card_arrival\n" + facts)
    asked = "I'm off on holiday tomorrow. Can it reach me quicker?"
    assert not set(answers.content_words(asked)) & set(answers.content_words(express))
    index = index_pages(tmp_path, monkeypatch, {**PAGES, "card-delivery": page})
    assert knowledge.load_facts(tmp_path)[1] == ("faster shipping price", "card-delivery", "Express delivery costs £5")
    row = [r for r, p in enumerate(index.sentence_rows)
           if express in index.passages[p].text and index.passages[p].heading == "Express delivery"]
    assert index.example_sentences.tolist()[-2:] == row * 2 and (index.example_sentences[:-2] == -1).all()
    index.save(tmp_path / "index.npz")
    loaded = knowledge.KnowledgeIndex.load(tmp_path / "index.npz")
    assert loaded.example_sentences.tolist() == index.example_sentences.tolist()
    similarity = loaded.fact_similarity(bag_of_words("faster shipping price"))
    assert similarity[row[0]] == pytest.approx(1.0) and np.isnan(np.delete(similarity, row[0])).all()
    # through the action: the express sentence answers, from the fact question alone
    _, messages, _ = run_action([_user(asked)], (), monkeypatch)
    assert messages[0]["source"] == "knowledge" and messages[0]["sources"] == ["card-delivery"]
    assert express in messages[0]["text"]
    # without its fact questions the same message is not answered with it
    index_pages(tmp_path, monkeypatch, PAGES)
    _, messages, _ = run_action([_user(asked)], (), monkeypatch)
    assert express not in messages[0]["text"]
    for wrong, count in (("Express delivery costs £6", 0), ("at a UK address", 2)):
        (tmp_path / "card-delivery.md").write_text(page.replace("Express delivery costs £5\"", wrong + '"'))
        with pytest.raises(knowledge.KnowledgeError, match=f"is in {count} sentences"):
            knowledge_build.build(lambda texts: np.stack([bag_of_words(t) for t in texts]), tmp_path,
                                  nlu_file=tmp_path / "no-examples.yml")


def test_the_action_server_refuses_to_start_without_a_current_index(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "KNOWLEDGE_INDEX": str(tmp_path / "missing.npz")}
    done = subprocess.run([sys.executable, "-m", "actions.server", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=settings.ROOT)
    assert done.returncode == 2, done.stderr
    assert "missing.npz does not exist" in done.stderr
    assert "python -m assistant.knowledge build" in done.stderr


def test_a_pages_customer_questions_lead_to_it(tmp_path):
    """The questions a page lists in its front matter are example questions of that page,
    beside the NLU examples of its intents, and are part of the index's digest."""
    for page, text in PAGES.items():
        (tmp_path / f"{page}.md").write_text(text)
    nlu = tmp_path / "nlu.yml"
    nlu.write_text('version: "3.1"\nnlu:\n- intent: card_arrival\n  examples: |\n    - where is my card\n')
    (tmp_path / "fees.md").write_text(PAGES["fees"].replace(
        "  - transfer_fee_charged\n", "  - transfer_fee_charged\n"
        "questions:\n  - \"how much to send money overseas?\"\n  - \"  sending cash abroad:   cost \"\n"))
    assert knowledge.load_examples(tmp_path, nlu) == [
        ("how much to send money overseas?", "fees", False), ("sending cash abroad: cost", "fees", False),
        ("where is my card", "card-delivery", True)]
    embed = lambda texts: np.stack([bag_of_words(t) for t in texts])  # noqa: E731
    index = knowledge_build.build(embed, tmp_path, model="m", nlu_file=nlu)
    query = bag_of_words("send money overseas")  # no word of the fees page's own text
    assert float(knowledge.unit(index.vectors[-1]) @ query) == 0.0
    hit = index.search(query, 1, intent_weight=0.0, lexical_weight=0.0)[0]
    assert hit.passage.page_id == "fees" and hit.score > 0
    # an NLU example counts NLU_EXAMPLE_PENALTY less than a question the page lists, also once saved and loaded
    index.save(tmp_path / "index.npz")
    for loaded in (index, knowledge.KnowledgeIndex.load(tmp_path / "index.npz")):
        assert loaded.example_nlu.tolist() == [False, False, True]
        own = loaded.search(bag_of_words("how much to send money overseas?"), 1, intent_weight=0.0,
                            lexical_weight=0.0)[0]
        nlu_example = loaded.search(bag_of_words("where is my card"), 1, intent_weight=0.0, lexical_weight=0.0)[0]
        assert own.passage.page_id == "fees" and own.page_similarity == pytest.approx(1.0)
        assert nlu_example.passage.page_id == "card-delivery"
        assert nlu_example.page_similarity == pytest.approx(1.0 - knowledge.NLU_EXAMPLE_PENALTY)
        assert nlu_example.score == pytest.approx(knowledge.PASSAGE_WEIGHT * nlu_example.similarity
                                                  + (1 - knowledge.PASSAGE_WEIGHT) * nlu_example.page_similarity)
        # a question worded like the page's text, not like its examples, scores the plain mean
        page_words = loaded.search(bag_of_words(loaded.passages[0].text), 1, intent_weight=0.0,
                                   lexical_weight=0.0)[0]
        assert page_words.similarity > page_words.page_similarity
        assert page_words.score == pytest.approx((page_words.similarity + page_words.page_similarity) / 2)
    before = knowledge.digest(tmp_path, nlu)
    (tmp_path / "fees.md").write_text((tmp_path / "fees.md").read_text().replace("overseas", "abroad"))
    assert knowledge.digest(tmp_path, nlu) != before
