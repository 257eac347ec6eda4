"""End to end: the real generator, action server and Rasa on loopback ports.

Replies are checked against what Rasa stored in its SQL tracker store, so each
assertion is about what really happened in the conversation, not about a mock.
"""
from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from actions.llm_reply import HUMAN_BUTTON, NO_KNOWLEDGE_TEXT
from assistant.reply import CLARIFY_TEXT
from assistant.settings import KNOWLEDGE_TOP_K
from ops.stack import post
from tests.conftest import API_TOKEN, GENERATOR_TIMEOUT_S, bank_rows, get_json, metadata

OPEN_QUESTION = "what is the tallest building in the world"
# The quick fact benchmark's floors: one under what the pipeline got on 2026-12-04 (11, 12, 12 of 12).
QUICK_FLOORS = {"answerable": 10, "unanswerable": 11, "followups": 11}


def _texts(reply):
    return [message.get("text") for message in reply]


def test_greeting_gets_a_greeting(running_stack, domain_responses):
    status, reply = running_stack.say("e2e-greet", "hello there")
    assert status == 200
    assert _texts(reply)[0] in domain_responses["utter_greet"]
    assert metadata(running_stack.last_bot_event("e2e-greet"))["utter_action"] == "utter_greet"


def test_card_arrival_is_classified_and_answered(running_stack, domain_responses):
    status, reply = running_stack.say("e2e-card", "my card still hasn't arrived")
    assert status == 200
    user = [e for e in running_stack.events("e2e-card") if e["event"] == "user"][-1]
    assert user["parse_data"]["intent"]["name"] == "card_arrival"
    # answered from the intent's page: its sentences (verbatim), with the page as the source
    text = _texts(reply)[0]
    assert "working days" in text and text.endswith("Source: Card delivery and tracking")
    bot = metadata(running_stack.last_bot_event("e2e-card"))
    assert bot["source"] == "knowledge" and bot["sources"] == ["card-delivery"]
    actions = [e["name"] for e in running_stack.events("e2e-card") if e["event"] == "action"]
    assert actions[-2:] == ["action_llm_reply", "action_listen"]


def test_out_of_scope_question_gets_the_honest_no_knowledge_reply(running_stack):
    """The LLM path runs (retrieval through the generator's embeddings) and, as the
    knowledge base does not answer it, says so and offers a person instead of guessing."""
    status, reply = running_stack.say("e2e-llm", OPEN_QUESTION)
    assert status == 200
    events = running_stack.events("e2e-llm")
    actions = [e["name"] for e in events if e["event"] == "action"]
    assert "action_llm_reply" in actions
    bot = running_stack.last_bot_event("e2e-llm")
    assert metadata(bot)["source"] == "no_knowledge"
    assert "sources" not in metadata(bot)  # only an LLM answer cites a page
    assert len(metadata(bot)["retrieval"]) == KNOWLEDGE_TOP_K
    assert _texts(reply)[0] == bot["text"] == NO_KNOWLEDGE_TEXT
    assert reply[0]["buttons"] == [HUMAN_BUTTON]


# A development-8 question the gate refuses while its two best pages score alike (cash paid
# in at the Post Office: the cash deposits page and the top-up page both speak of it). Since
# the pages' `facts:` questions, the earlier example (a transfer from another bank) is answered.
CLOSE_CALL = "Sold my old van for £2,400 in cash. Can I put the whole lot in at the post office tomorrow?"


def test_a_question_two_pages_answer_alike_gets_a_choice_and_the_chosen_page_answers(running_stack):
    """Instead of "I don't know", a question that two pages fit about equally well gets
    a clarifying question: a button per page (and a person). The chosen page's button
    answers the earlier question from that page."""
    sender = "e2e-clarify"
    status, reply = running_stack.say(sender, CLOSE_CALL)
    assert status == 200
    bot = metadata(running_stack.last_bot_event(sender))
    assert bot["source"] == "clarify" and "sources" not in bot, bot
    assert reply[0]["text"] == CLARIFY_TEXT
    assert "cash-and-cheque-deposits" in bot["choices"] and len(bot["choices"]) == 2
    buttons = reply[0]["buttons"]
    assert buttons[-1] == HUMAN_BUTTON and len(buttons) == 3
    chosen = [b for b in buttons if '"cash-and-cheque-deposits"' in b["payload"]]
    assert [b["title"] for b in chosen] == ["Paying in cash and cheques"], buttons
    status, reply = running_stack.say(sender, chosen[0]["payload"])
    assert status == 200
    bot = metadata(running_stack.last_bot_event(sender))
    assert bot["source"] == "knowledge" and bot["sources"] == ["cash-and-cheque-deposits"], bot
    assert re.search(r"£1,000 in cash per day", reply[0]["text"]), reply[0]["text"]
    assert reply[0]["text"].endswith("Source: Paying in cash and cheques")
    # a payload naming no page gets the polite fallback, not an error
    status, reply = running_stack.say("e2e-clarify-bad", '/choose_topic{"topic_page": "no-such-page"}')
    assert status == 200 and metadata(running_stack.last_bot_event("e2e-clarify-bad"))["source"] == "fallback"


def test_conversation_is_stored_and_survives_a_rasa_restart(running_stack):
    sender = "e2e-restart"
    assert running_stack.say(sender, "hi")[0] == 200
    assert running_stack.say(sender, "how do I activate my card?")[0] == 200
    before = running_stack.events(sender)
    assert [e["text"] for e in before if e["event"] == "user"] == ["hi", "how do I activate my card?"]

    running_stack.restart(running_stack.rasa)

    tracker = get_json(f"{running_stack.rasa_url}/conversations/{sender}/tracker?token={API_TOKEN}")
    user_texts = [e["text"] for e in tracker["events"] if e["event"] == "user"]
    assert user_texts == ["hi", "how do I activate my card?"]
    assert running_stack.say(sender, "thanks!")[0] == 200
    after = running_stack.events(sender)
    assert after[: len(before)] == before  # nothing lost or rewritten
    assert [e["text"] for e in after if e["event"] == "user"][-1] == "thanks!"
    assert metadata(running_stack.last_bot_event(sender))["utter_action"] == "utter_thank"


def test_generator_stopped_gives_fallback_then_llm_resumes(running_stack, domain_responses):
    sender = "e2e-generator-down"
    running_stack.generator.stop()
    started = time.monotonic()
    status, reply = running_stack.say(sender, OPEN_QUESTION)
    assert status == 200
    assert time.monotonic() - started < GENERATOR_TIMEOUT_S
    assert _texts(reply)[0] in domain_responses["utter_llm_fallback"]
    assert metadata(running_stack.last_bot_event(sender))["source"] == "fallback"

    running_stack.restart(running_stack.generator)
    assert running_stack.say(sender, "who wrote the odyssey")[0] == 200
    assert metadata(running_stack.last_bot_event(sender))["source"] == "no_knowledge"  # the generator answered


def test_hung_generator_times_out_into_the_fallback(running_stack, domain_responses):
    sender = "e2e-generator-hung"
    pid = running_stack.generator.process.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        started = time.monotonic()
        status, reply = running_stack.say(sender, OPEN_QUESTION)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert status == 200
    assert GENERATOR_TIMEOUT_S - 1 <= elapsed < GENERATOR_TIMEOUT_S + 10
    assert _texts(reply)[0] in domain_responses["utter_llm_fallback"]
    assert metadata(running_stack.last_bot_event(sender))["llm_error"] == "timeout"


def test_a_slow_conversation_does_not_delay_the_others(running_stack, domain_responses):
    """While one conversation waits on a hung generator, another is answered at once."""
    import threading

    pid = running_stack.generator.process.pid
    os.kill(pid, signal.SIGSTOP)
    slow_reply = {}
    slow = threading.Thread(
        target=lambda: slow_reply.update(reply=running_stack.say("e2e-slow", OPEN_QUESTION))
    )
    try:
        slow.start()
        time.sleep(2)  # the slow turn is now waiting inside action_llm_reply
        timings = []
        for i in range(3):
            started = time.monotonic()
            status, reply = running_stack.say(f"e2e-fast-{i}", "hello")
            timings.append(time.monotonic() - started)
            assert status == 200 and reply[0]["text"] in domain_responses["utter_greet"]
        assert slow.is_alive(), "the slow conversation should still be waiting"
        assert max(timings) < 2.0, timings
    finally:
        os.kill(pid, signal.SIGCONT)
        slow.join(GENERATOR_TIMEOUT_S + 30)
    assert slow_reply["reply"][0] == 200


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"{not json", 400),
        (b"\xff\xfe\x00 not utf-8", 400),
        (b"[1, 2, 3]", 400),
        (b'{"sender": "e2e-bad"}', 400),
        (b'{"sender": 5, "message": "hi"}', 400),
        (json.dumps({"sender": "e2e-bad", "message": "x" * 100_000}).encode(), 413),
    ],
    ids=["invalid-json", "non-utf8", "not-an-object", "no-message", "bad-sender", "100kB"],
)
def test_bad_input_gets_a_4xx(running_stack, body, expected):
    status, reply = post(f"{running_stack.rasa_url}/webhooks/rest/webhook", body)
    assert status == expected
    assert "error" in reply
    assert running_stack.rasa.running()


def test_empty_message_gets_a_polite_reply(running_stack, domain_responses):
    status, reply = running_stack.say("e2e-empty", "")
    assert status == 200
    assert reply and all(message.get("text") for message in reply)
    # and the server keeps serving
    assert running_stack.say("e2e-empty", "hello")[0] == 200


@pytest.mark.parametrize("text", [
    "I lost my card",  # the request of issue 19
    "my friend hasn't received the money I sent",
    "there's a payment on my account I don't recognise",
], ids=["lost card", "transfer", "dispute"])
def test_an_anonymous_caller_naming_a_customer_gets_nothing_of_that_customer(running_stack, text):
    """The REST channel as `make run` leaves it (no REST_CHANNEL_TOKEN): a caller's
    metadata.customer_id identifies nobody, so the account actions say how to sign in,
    reveal nothing of C1002 and change nothing (docs/security.md; the same request with
    the token: test_identity_e2e.py)."""
    from actions import forms

    before = bank_rows(running_stack.bank_url)
    sender = f"attacker-{text[:8].replace(' ', '-')}"
    body = {"sender": sender, "message": text, "metadata": {"customer_id": "C1002"}}
    status, reply = post(f"{running_stack.rasa_url}/webhooks/rest/webhook", json.dumps(body).encode())
    assert status == 200
    said = " ".join(_texts(reply))
    assert _texts(reply)[-1].startswith(forms.SIGN_IN_REQUIRED)
    assert not re.search(r"3377|Sam Patel|Page Turner|Lee Wong|card ending|TX-", said), said
    assert bank_rows(running_stack.bank_url) == before


def test_rasa_side_embeddings_match_the_generators(running_stack):
    """The fp32 ONNX export gives the generator's sentence-transformers vectors; the
    int8 one used by default stays close to them."""
    import numpy as np

    from assistant.encoder import DEFAULT_MODEL_DIR, SentenceEncoder

    texts = ["I lost my card", "How long does a transfer to Germany take?"]
    port = running_stack.generator.health_url.split(":")[2].split("/")[0]
    status, body = post(
        f"http://127.0.0.1:{port}/v1/embeddings",
        json.dumps({"model": "all-MiniLM-L6-v2", "input": texts}).encode(),
    )
    assert status == 200
    reference = np.array([item["embedding"] for item in body["data"]])
    ours = SentenceEncoder(DEFAULT_MODEL_DIR, threads=1, quantized=False).encode(texts, batch_size=8)
    assert np.min(np.sum(reference * ours, axis=1)) > 0.999
    int8 = SentenceEncoder(DEFAULT_MODEL_DIR, threads=1).encode(texts, batch_size=8)
    assert np.min(np.sum(reference * int8, axis=1)) > 0.85


def test_status_shows_every_part(running_stack, monkeypatch, trained_model):
    from ops import status

    monkeypatch.setenv("RASA_API_TOKEN", API_TOKEN)
    rasa_port = int(running_stack.rasa_url.rsplit(":", 1)[1])
    actions_port = int(running_stack.actions.health_url.split(":")[2].split("/")[0])
    generator_port = running_stack.generator.health_url.split(":")[2].split("/")[0]
    rows = status.collect(rasa_port, actions_port, f"http://127.0.0.1:{generator_port}/v1",
                          f"sqlite:///{running_stack.db_path}", lock_url="")
    assert all(up for _, up, _ in rows), rows
    details = dict((name, detail) for name, _, detail in rows)
    assert "Rasa" in details["rasa"] and "SmolLM2-135M-Instruct" in details["generator"]
    assert details["embeddings"].endswith(": all-MiniLM-L6-v2")
    assert f"serving {trained_model.name}" in details["rasa"]
    assert "conversations" in details["tracker store"]
    down = status.collect(rasa_port, actions_port, "http://127.0.0.1:9/v1",
                          f"sqlite:///{running_stack.db_path}", lock_url="redis://127.0.0.1:9/1")
    assert status.status(down) == 1
    assert [name for name, up, _ in down if not up] == ["generator", "embeddings", "lock store"]
    # embeddings on the running generator while chat is elsewhere (EMBEDDINGS_URL)
    split = status.collect(rasa_port, actions_port, "http://127.0.0.1:9/v1", f"sqlite:///{running_stack.db_path}",
                           lock_url="", embeddings_url=f"http://127.0.0.1:{generator_port}/v1")
    assert [name for name, up, _ in split if not up] == ["generator"]
    assert dict((n, d) for n, _, d in split)["embeddings"] == f"http://127.0.0.1:{generator_port}/v1: all-MiniLM-L6-v2"


def test_action_server_metrics_after_the_conversations(running_stack):
    """Runs after the tests above: LLM replies, fallbacks and timeouts have happened."""
    import urllib.request

    port = running_stack.actions.health_url.split(":")[2].split("/")[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()

    def value(pattern):
        match = re.search(pattern + r" ([0-9.e+]+)", text)
        assert match, pattern
        return float(match.group(1))

    assert value(r'action_server_action_seconds_count\{action="action_llm_reply",status="200"\}') >= 5
    assert value(r'action_server_llm_calls_total\{outcome="ok"\}') >= 2
    assert value(r'action_server_llm_calls_total\{outcome="timeout"\}') >= 1
    assert value(r'action_server_llm_calls_total\{outcome="connection"\}') >= 1
    failed_calls = value(r'action_server_llm_calls_total\{outcome="timeout"\}') + value(
        r'action_server_llm_calls_total\{outcome="connection"\}'
    )
    assert value(r"action_server_fallback_replies_total") >= failed_calls
    assert value(r"action_server_llm_seconds_count") == value(r'action_server_llm_calls_total\{outcome="ok"\}')


def test_turn_metrics_exporter_after_a_scripted_conversation(running_stack):
    """The exporter counts exactly the turns of a conversation scripted after it started."""
    from prometheus_client import generate_latest

    from ops.exporter import TrackerStoreExporter

    exporter = TrackerStoreExporter(f"sqlite:///{running_stack.db_path}")
    exporter.start_at_end()
    sender = "e2e-exporter"
    # the handoff last: from then on the bot is silent in this conversation (actions/handoff.py)
    for text in ("hello", "my card still hasn't arrived", OPEN_QUESTION, "can I talk to a human please"):
        assert running_stack.say(sender, text)[0] == 200
    assert exporter.refresh() > 0
    text = generate_latest(exporter.registry).decode()

    def value(name):
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        return float(line.split()[-1])

    assert value("rasa_user_messages_total") == 4
    assert value("rasa_bot_messages_total") >= 4
    assert value("rasa_handoffs_total") == 1
    assert value('rasa_llm_replies_total{source="no_knowledge"}') == 1
    assert value("rasa_intent_confidence_count") == 4
    assert 0 < value("rasa_reply_latency_seconds_sum") < 60
    assert value("rasa_reply_latency_seconds_count") == 4


def test_the_quick_fact_benchmark_holds(running_stack):
    """The quick form of `python -m bench.answers` that CI runs: the first 12 questions of
    each kind of the development set, through REST, scored on the fact the reply must
    state. The floors sit one question under what the current pipeline gets (settings
    were chosen on this set), so a change that makes answers worse fails here."""
    from bench import answers as fact

    numbers, corpus = fact.known_figures()
    rows = fact.run_set("development", running_stack.rasa_url, running_stack.db_path, 12, numbers, corpus)
    outcomes = {kind: [r["outcome"] for r in rows if r["kind"] == kind]
                for kind in ("answerable", "unanswerable", "followups")}
    print({kind: {o: found.count(o) for o in set(found)} for kind, found in outcomes.items()})
    assert [len(found) for found in outcomes.values()] == [12, 12, 12]
    assert outcomes["answerable"].count("correct") >= QUICK_FLOORS["answerable"]
    assert outcomes["unanswerable"].count("honest") >= QUICK_FLOORS["unanswerable"]
    assert outcomes["followups"].count("correct") >= QUICK_FLOORS["followups"]
    assert not [r for r in rows if r["unsupported"]], "a reply states a figure no page or bank row has"
