"""Channel security on the real Rasa server: JWT on socket.io, allowed web origins,
a bearer token on the REST channel and on Rasa's HTTP API."""
from __future__ import annotations

import json
import queue
import sqlite3
import time
import urllib.error
import urllib.request

import jwt
import pytest
import socketio

from tests.browser.conftest import JWT_KEY, REST_TOKEN
from tests.conftest import API_TOKEN


def client(url, origin, token=None):
    """A socket.io client over websockets, as a browser on `origin` would connect."""
    sio = socketio.Client(reconnection=False, websocket_extra_options={"origin": origin})
    sio.connect(url, auth={"token": token} if token else None, transports=["websocket"], wait_timeout=10)
    return sio


def connect(url, origin, token=None):
    """(connected?, error) for a socket.io client sending this Origin and token."""
    try:
        client(url, origin, token).disconnect()
        return True, None
    except socketio.exceptions.ConnectionError as error:
        return False, str(error)


def token(key=JWT_KEY, expires_in=600):
    now = int(time.time())
    return jwt.encode({"sub": "visitor-1", "iat": now, "exp": now + expires_in}, key, algorithm="HS256")


def http(url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_socketio_needs_a_valid_jwt(web_stack):
    assert connect(web_stack.rasa_url, web_stack.page_url, token()) == (True, None)
    assert connect(web_stack.rasa_url, web_stack.page_url)[0] is False
    assert connect(web_stack.rasa_url, web_stack.page_url, token(key="another-key-0123456789abcdef"))[0] is False
    assert connect(web_stack.rasa_url, web_stack.page_url, token(expires_in=-60))[0] is False


def test_socketio_refuses_other_web_origins(web_stack):
    assert connect(web_stack.rasa_url, "https://evil.example", token())[0] is False


def test_cors_headers_only_for_the_configured_origin(web_stack):
    def preflight(origin):
        request = urllib.request.Request(
            f"{web_stack.rasa_url}/webhooks/rest/webhook", method="OPTIONS",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers.get("Access-Control-Allow-Origin")

    assert preflight(web_stack.page_url) == web_stack.page_url
    assert preflight("https://evil.example") is None


def test_rest_channel_needs_the_bearer_token(web_stack):
    url = f"{web_stack.rasa_url}/webhooks/rest/webhook"
    body = json.dumps({"sender": "rest-auth", "message": "hello"}).encode()
    assert http(url, body)[0] == 401
    assert http(url, body, {"Authorization": "Bearer wrong"})[0] == 401
    status, reply = http(url, body, {"Authorization": f"Bearer {REST_TOKEN}"})
    assert status == 200 and reply and reply[0]["text"]


@pytest.mark.parametrize("path", ["/conversations/rest-auth/tracker", "/status"])
def test_rasa_http_api_needs_its_token(web_stack, path):
    assert http(f"{web_stack.rasa_url}{path}")[0] == 401
    assert http(f"{web_stack.rasa_url}{path}?token=wrong")[0] == 401
    assert http(f"{web_stack.rasa_url}{path}?token={API_TOKEN}")[0] == 200


def test_model_cannot_be_replaced_without_the_token(web_stack):
    request = urllib.request.Request(
        f"{web_stack.rasa_url}/model", data=b'{"model_file": "/tmp/x.tar.gz"}', method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_history_only_for_the_socket_in_that_session(web_stack):
    """A socket gets the history of the session it joined, not of any id it names."""
    owner = client(web_stack.rasa_url, web_stack.page_url, token())
    other = client(web_stack.rasa_url, web_stack.page_url, token())
    got = {"owner": queue.Queue(), "other": queue.Queue(), "confirm": queue.Queue(), "reply": queue.Queue()}
    owner.on("history", got["owner"].put)
    other.on("history", got["other"].put)
    owner.on("session_confirm", got["confirm"].put)
    owner.on("bot_uttered", got["reply"].put)
    try:
        owner.emit("session_request", {"session_id": "history-owner"})
        other.emit("session_request", {"session_id": "history-other"})
        assert got["confirm"].get(timeout=10) == "history-owner"
        owner.emit("user_uttered", {"message": "hello", "session_id": "history-owner"})
        assert got["reply"].get(timeout=60)["text"]
        deadline = time.monotonic() + 30  # the reply is sent before the turn is saved
        while len(_stored(web_stack.db_path, "history-owner")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        owner.emit("history_request", {"session_id": "history-owner"})
        other.emit("history_request", {"session_id": "history-owner"})
        mine = got["owner"].get(timeout=10)
        time.sleep(1)
        assert got["other"].empty()
    finally:
        owner.disconnect()
        other.disconnect()
    assert [m["from"] for m in mine["messages"]] == ["user", "bot"]
    assert mine["messages"][0]["text"] == "hello"
    assert mine["messages"][1]["text"] == _stored(web_stack.db_path, "history-owner")[-1]


def _stored(db_path, sender):
    """Texts of the user and bot events Rasa stored for this conversation."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT data FROM events WHERE sender_id = ? AND type_name IN ('user', 'bot') ORDER BY id", (sender,)
        ).fetchall()
    return [json.loads(data).get("text") for (data,) in rows]
