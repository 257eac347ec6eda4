"""Only an authenticated caller acts on an account (docs/security.md, "Identity").

The real stack, with Rasa configured as the deployment files require it: REST_CHANNEL_TOKEN
(the bank's back end calls the REST channel with it and names the signed-in customer in
metadata.customer_id) and SOCKETIO_JWT_KEY (the bank's site signs the chat widget's JWT,
whose `customer_id` claim names the customer). Each attempt to name a customer without
that authority gets the sign-in answer, and the bank database is compared before and
after: nothing of C1002 is revealed or changed. The same message from an anonymous REST
caller where no token is configured (as under `make run`) is in test_stack_e2e.py.
"""
from __future__ import annotations

import queue
import re
import time

import jwt
import pytest
import socketio

from actions import forms
from tests.conftest import REST_TOKEN, bank_rows, rest_post

JWT_KEY = "identity-test-jwt-key-0123456789abcdef"
ORIGIN = "http://localhost:8080"  # an allowed web origin (CORS_ORIGINS' default)
# What C1002's account would give away: its card's last digits, name, payees and merchants.
C1002_SECRETS = re.compile(r"3377|Sam Patel|Page Turner|Lee Wong|£12\.00|£75\.00")
ASK_C1002 = "I can freeze it for you now. Is it your card ending 3377?"


@pytest.fixture(scope="module")
def rasa_env():
    return {"REST_CHANNEL_TOKEN": REST_TOKEN, "SOCKETIO_JWT_KEY": JWT_KEY}


def _texts(reply):
    return [message.get("text") or "" for message in reply]


def _signed(claims, key=JWT_KEY):
    now = int(time.time())
    return jwt.encode({"sub": "visitor-1", "iat": now, "exp": now + 600, **claims}, key, algorithm="HS256")


def _assert_nothing_of_c1002(texts):
    said = " ".join(texts)
    assert not C1002_SECRETS.search(said), said
    for message in texts:
        assert "card ending" not in message, message


# --- REST ------------------------------------------------------------------------------


def test_the_back_end_with_the_token_names_the_customer(running_stack):
    """The issue's curl with the right bearer token works: the form offers C1002's card."""
    sender = "identity-rest-token"
    status, reply = running_stack.say(sender, "I lost my card", customer="C1002")
    assert status == 200 and _texts(reply)[-1] == ASK_C1002
    before = bank_rows(running_stack.bank_url)
    status, reply = running_stack.say(sender, "stop", customer="C1002")
    assert status == 200 and bank_rows(running_stack.bank_url) == before


def test_a_caller_without_the_token_is_refused_and_nothing_changes(running_stack):
    before = bank_rows(running_stack.bank_url)
    body = {"sender": "identity-attacker", "message": "I lost my card", "metadata": {"customer_id": "C1002"}}
    for token in ("", "wrong-token"):
        status, reply = rest_post(running_stack.rasa_url, body, token)
        assert status == 401 and "error" in reply
    assert running_stack.events("identity-attacker") == []
    assert bank_rows(running_stack.bank_url) == before


@pytest.mark.parametrize("metadata", [
    {"verified_customer_id": "C1002"},  # the channel's own key, forged by the client
    {"customer_id": ""},
    {},
], ids=["forged verified key", "empty customer_id", "no customer"])
def test_the_back_end_without_a_customer_gets_the_sign_in_answer(running_stack, metadata):
    """Even the trusted back end identifies nobody unless it names the customer."""
    before = bank_rows(running_stack.bank_url)
    sender = f"identity-nobody-{len(metadata)}-{'-'.join(metadata)}"
    body = {"sender": sender, "message": "I lost my card", "metadata": metadata}
    status, reply = rest_post(running_stack.rasa_url, body, REST_TOKEN)
    assert status == 200
    texts = _texts(reply)
    assert texts[-1] == forms.SIGN_IN_REQUIRED + forms.LOST_CARD_WITHOUT_APP
    _assert_nothing_of_c1002(texts)
    assert bank_rows(running_stack.bank_url) == before
    # the form ended: no card question is pending, and Rasa stored no identity
    events = running_stack.events(sender)
    assert [e["name"] for e in events if e["event"] == "active_loop"] == ["lost_card_form", None]
    assert not any("verified_customer_id" in (e.get("metadata") or {}) for e in events if e["event"] == "user")


# --- socket.io ---------------------------------------------------------------------------


def _socket_turn(rasa_url, token, text, metadata, session_id):
    """Connect with `token`, join `session_id`, send `text` with `metadata` (where Rasa's
    socket.io channel reads it; also as the widget's customData); the bot's messages of
    that turn (the last one carries buttons)."""
    client = socketio.Client(reconnection=False, websocket_extra_options={"origin": ORIGIN})
    got, confirmed = queue.Queue(), queue.Queue()
    client.on("bot_uttered", got.put)
    client.on("session_confirm", confirmed.put)
    client.connect(rasa_url, auth={"token": token} if token else None, transports=["websocket"], wait_timeout=10)
    try:
        client.emit("session_request", {"session_id": session_id})
        assert confirmed.get(timeout=10) == session_id
        client.emit("user_uttered", {"message": text, "session_id": session_id, "metadata": metadata,
                                     "customData": metadata})
        messages = [got.get(timeout=90)]
        while not messages[-1].get("quick_replies"):
            messages.append(got.get(timeout=90))
        time.sleep(1)  # nothing more comes
        while not got.empty():
            messages.append(got.get_nowait())
        return messages
    finally:
        client.disconnect()


def test_socketio_without_a_valid_jwt_cannot_connect(running_stack):
    for token in (None, _signed({"customer_id": "C1002"}, key="another-key-0123456789abcdef")):
        with pytest.raises(socketio.exceptions.ConnectionError):
            _socket_turn(running_stack.rasa_url, token, "I lost my card", {"customer_id": "C1002"}, "identity-x")


@pytest.mark.parametrize("claims, metadata, expected", [
    # a visitor who is not signed in names a customer in the message metadata
    ({}, {"customer_id": "C1002", "verified_customer_id": "C1002"}, "sign in"),
    # a signed-in customer (C1001) names another one in the metadata
    ({"customer_id": "C1001"}, {"customer_id": "C1002", "verified_customer_id": "C1002"}, "C1001"),
], ids=["no claim", "C1001 claiming C1002"])
def test_socketio_metadata_does_not_name_the_customer(running_stack, claims, metadata, expected):
    before = bank_rows(running_stack.bank_url)
    session = f"identity-socket-{expected.replace(' ', '-')}"
    messages = _socket_turn(running_stack.rasa_url, _signed(claims), "I lost my card", metadata, session)
    texts = _texts(messages)
    _assert_nothing_of_c1002(texts)
    buttons = [b["title"] for b in messages[-1]["quick_replies"]]
    if expected == "sign in":
        assert texts[-1] == forms.SIGN_IN_REQUIRED + forms.LOST_CARD_WITHOUT_APP
        assert buttons == ["Talk to a person"]
    else:  # the token's customer: C1001's own cards, nothing of C1002's
        assert texts[-1] == "I can freeze it for you now. Which card is it? Choose it below or type its last 4 digits."
        assert buttons == ["Card ending 4821", "Virtual card ending 9034"]
    assert bank_rows(running_stack.bank_url) == before
    stored = [e for e in running_stack.events(session) if e["event"] == "user"]
    assert [e["metadata"].get("verified_customer_id") for e in stored] == [claims.get("customer_id")]


def test_socketio_the_jwt_claim_names_the_customer(running_stack):
    """The positive case: the site signed a token for C1002, so C1002's card is offered."""
    messages = _socket_turn(running_stack.rasa_url, _signed({"customer_id": "C1002"}), "I lost my card",
                            {}, "identity-socket-c1002")
    assert _texts(messages)[-1] == ASK_C1002
