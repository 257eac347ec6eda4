"""Action server pieces: prompt building and the generator client's failure modes.

The client tests talk HTTP to small aiohttp servers that misbehave on purpose
(HTTP 500, a non-JSON body, no answer at all): failure modes the real generator
cannot be made to produce on demand. The real generator is used in test_stack_e2e.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from actions.clients import generator
from actions.conversation import build_prompt, recent_messages


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
    prompt = build_prompt(events)
    assert prompt[0]["role"] == "system" and "Lakeside Bank" in prompt[0]["content"]
    assert prompt[1:] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "what is the tallest building?"},
    ]


def test_history_is_limited_and_long_messages_are_cut():
    events = [_user(f"message {i}") for i in range(10)] + [_user("x" * 5000)]
    history = recent_messages(events, limit=3)
    assert [m["content"][:9] for m in history] == ["message 8", "message 9", "x" * 9]
    assert len(history[-1]["content"]) == 1000


async def _serve(handler):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
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
