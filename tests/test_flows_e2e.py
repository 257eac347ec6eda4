"""End to end through the REST channel on the real stack (generator, action server, Rasa):
a whole form with a correction, a customer named in the message metadata, and a
handoff in the middle of a form followed by the operator's release. Replies are checked
against the bank database and Rasa's tracker store.

The REST channel requires REST_CHANNEL_TOKEN here, and every message comes as the bank's
back end sends it: with the token and the signed-in customer (metadata.customer_id,
the demo customer C1001 unless a test names another). The same messages from a caller
without the token are tested in test_identity_e2e.py."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from assistant import bank
from ops import handoff as ops_handoff
from tests.conftest import API_TOKEN, REST_TOKEN


@pytest.fixture(scope="module")
def rasa_env():
    return {"REST_CHANNEL_TOKEN": REST_TOKEN}


def _texts(reply):
    return [message.get("text") for message in reply if message.get("text")]


def _say(stack, sender, text, customer="C1001"):
    status, reply = stack.say(sender, text, customer=customer)
    assert status == 200, reply
    return reply


def _card(url, customer, last4):
    async def main():
        db = bank.Bank(url)
        try:
            return await db.card(customer, last4)
        finally:
            await db.close()

    return asyncio.run(main())


def test_transfer_form_with_a_correction(running_stack, domain_responses):
    sender = "e2e-transfer"
    reply = _say(running_stack, sender, "my friend hasn't received the money I sent")
    assert _texts(reply)[0] in domain_responses["utter_transfer_not_received_by_recipient"]
    assert _texts(reply)[1] == "I can check that transfer for you. How much did you send (for example £250)?"

    reply = _say(running_stack, sender, "£150")
    assert _texts(reply) == ["And when did you send it? A date like 3 March, or \"yesterday\", is fine."]
    assert [b["title"] for b in reply[0]["buttons"]] == ["Today", "Yesterday"]

    reply = _say(running_stack, sender, "sorry, it was 250 not 150")
    assert _texts(reply) == ["Got it: £250.00, not £150.00.",
                             "And when did you send it? A date like 3 March, or \"yesterday\", is fine."]

    reply = _say(running_stack, sender, "yesterday")
    yesterday = dt.date.today() - dt.timedelta(days=1)
    assert _texts(reply) == [
        f"Your transfer of £250.00 to Priya Shah, sent yesterday ({yesterday.day} {yesterday.strftime('%B')}), is "
        "pending: it's held for a security check because it is your first payment to this recipient. Held UK "
        "transfers are released within 1 working day, and you don't need to do anything. While it shows as "
        "Pending, you can still cancel it under Payments in the Lakeside app."
    ]
    events = running_stack.events(sender)
    amounts = [e["value"] for e in events if e["event"] == "slot" and e["name"] == "transfer_amount"]
    assert "150.00" in amounts and "250.00" in amounts and amounts[-1] is None  # reset after the answer
    assert [e["name"] for e in events if e["event"] == "active_loop"] == ["transfer_form", None]

    # the form is over: the next message is answered as usual
    reply = _say(running_stack, sender, "thanks a lot")
    assert _texts(reply)[0] in domain_responses["utter_thank"]


def test_lost_card_of_the_customer_named_in_the_metadata(running_stack):
    sender = "e2e-lost-card"
    reply = _say(running_stack, sender, "I lost my card", customer="C1002")
    assert _texts(reply)[-1] == "I can freeze it for you now. Is it your card ending 3377?"
    reply = _say(running_stack, sender, "yes", customer="C1002")
    assert _texts(reply)[0] == "I've frozen your card ending 3377, so no one can use it."
    assert _card(running_stack.bank_url, "C1002", "3377").status == "frozen"
    reply = _say(running_stack, sender, "yes please", customer="C1002")
    assert _texts(reply)[0].startswith("Done: your card ending 3377 is cancelled for good")
    assert _card(running_stack.bank_url, "C1002", "3377") == bank.Card("3377", "physical", "cancelled", True)


def test_handoff_in_a_form_then_release(running_stack, domain_responses):
    sender = "e2e-handoff"
    _say(running_stack, sender, "there's a payment on my account I don't recognise")
    reply = _say(running_stack, sender, "I want to talk to a real person")
    assert _texts(reply) == domain_responses["utter_request_human"]
    assert {"recipient_id": sender, "custom": {"handoff": True}} in reply
    [queued] = [h for h in bank.list_handoffs(running_stack.bank_url) if h.sender_id == sender]
    assert (queued.customer_id, queued.reason) == (
        "C1001", "asked for a person while asking about a card payment they don't recognise")

    # paused: stored, not answered, whatever is said
    for text in ("hello?", "my card still hasn't arrived", "what is the tallest building in the world"):
        assert _say(running_stack, sender, text) == []
    events = running_stack.events(sender)
    last_bot = max(i for i, e in enumerate(events) if e["event"] == "bot")
    assert [e["text"] for e in events[last_bot:] if e["event"] == "user"] == [
        "hello?", "my card still hasn't arrived", "what is the tallest building in the world"]
    assert [e["name"] for e in events if e["event"] == "active_loop"] == ["dispute_form", None]

    result = ops_handoff.release(sender, running_stack.rasa_url, token=API_TOKEN, released_by="e2e",
                                 db_url=running_stack.bank_url)
    assert _texts(result["messages"]) == domain_responses["utter_handoff_released"]
    assert {"recipient_id": sender, "custom": {"handoff": False}} in result["messages"]
    assert not [h for h in bank.list_handoffs(running_stack.bank_url) if h.sender_id == sender]

    reply = _say(running_stack, sender, "hello")
    assert _texts(reply)[0] in domain_responses["utter_greet"]
