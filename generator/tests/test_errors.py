"""Bad input gets a 4xx with an OpenAI error body, never a 500."""

from __future__ import annotations

import pytest

from .conftest import assert_openai_error

USER = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body, code",
    [
        ({}, "invalid_request"),  # missing messages
        ({"messages": []}, "invalid_request"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "invalid_request"),
        ({"messages": [{"role": "user"}]}, "invalid_request"),
        ({"messages": "hi"}, "invalid_request"),
        ({"messages": USER, "n": 9}, "invalid_request"),
        ({"messages": USER, "temperature": 3}, "invalid_request"),
        ({"messages": USER, "frequency_penalty": 2.5}, "invalid_request"),
        ({"messages": USER, "presence_penalty": -3}, "invalid_request"),
        ({"messages": USER, "frequency_penalty": "lots"}, "invalid_request"),
        ({"messages": USER, "max_tokens": 0}, "invalid_request"),
        ({"messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "invalid_request"),
        ({"messages": USER, "stop": [""]}, "invalid_request"),
        ({"messages": USER, "n": 2, "stream": True}, "unsupported_parameter"),
        ([1, 2, 3], "invalid_request"),
    ],
)
def test_invalid_chat_requests(server, body, code):
    error = assert_openai_error(server.client.post("/v1/chat/completions", json=body), 400, code)
    assert error["type"] == "invalid_request_error"


def test_missing_messages_names_the_field(server):
    error = assert_openai_error(server.client.post("/v1/chat/completions", json={"model": "default"}), 400)
    assert error["param"] == "messages"


@pytest.mark.parametrize("param", ["frequency_penalty", "presence_penalty"])
def test_an_out_of_range_penalty_names_the_field(server, param):
    error = assert_openai_error(server.client.post("/v1/chat/completions", json={"messages": USER, param: -2.01}), 400)
    assert error["param"] == param and "-2" in error["message"]


def test_invalid_json(server):
    r = server.client.post("/v1/chat/completions", content=b'{"messages": [', headers=JSON)
    assert_openai_error(r, 400, "invalid_json")


def test_non_utf8_body(server):
    r = server.client.post("/v1/chat/completions", content=b'\xff\xfe{"messages": []}', headers=JSON)
    assert_openai_error(r, 400)


def test_empty_body(server):
    assert_openai_error(server.client.post("/v1/chat/completions", content=b"", headers=JSON), 400)


def test_unknown_model(server):
    r = server.client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER})
    assert_openai_error(r, 404, "model_not_found")
    r = server.client.post("/v1/chat/completions", json={"model": "all-MiniLM-L6-v2", "messages": USER})
    assert_openai_error(r, 404, "model_not_found")
    r = server.client.post("/v1/embeddings", json={"model": "SmolLM2-135M-Instruct", "input": "x"})
    assert_openai_error(r, 404, "model_not_found")


def test_input_over_the_limit(server, settings):
    too_long = [{"role": "user", "content": "a" * (settings.max_input_chars + 1)}]
    r = server.client.post("/v1/chat/completions", json={"messages": too_long})
    assert_openai_error(r, 400, "context_length_exceeded")
    r = server.client.post("/v1/embeddings", json={"input": ["ok", "a" * (settings.max_input_chars + 1)]})
    assert_openai_error(r, 400, "context_length_exceeded")


@pytest.mark.parametrize("body", [{"input": []}, {"input": [1, 2]}, {}, {"input": "x", "dimensions": 12}])
def test_invalid_embedding_requests(server, body):
    assert_openai_error(server.client.post("/v1/embeddings", json=body), 400)


def test_too_many_embedding_inputs(server, settings):
    r = server.client.post("/v1/embeddings", json={"input": ["x"] * (settings.max_embedding_inputs + 1)})
    assert_openai_error(r, 400)


def test_body_too_large(make_server):
    small = make_server(max_body_bytes=4096)
    r = small.client.post("/v1/embeddings", json={"input": "x" * 10_000})
    assert_openai_error(r, 413, "request_too_large")


def test_unknown_path_and_method(server):
    assert_openai_error(server.client.get("/v1/nothing"), 404)
    assert_openai_error(server.client.get("/v1/chat/completions"), 405)


def test_api_key(make_server):
    guarded = make_server(api_key="s3cret")
    assert_openai_error(guarded.client.get("/v1/models"), 401, "invalid_api_key")
    r = guarded.client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    assert_openai_error(r, 401, "invalid_api_key")
    assert guarded.client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert guarded.client.get("/health").status_code == 200  # probes need no key


def test_chunked_body_too_large(make_server):
    small = make_server(max_body_bytes=4096)

    def chunks():
        for _ in range(10):
            yield b'{"input": "' + b"x" * 1000
    r = small.client.post("/v1/embeddings", content=chunks(), headers=JSON)
    assert_openai_error(r, 413, "request_too_large")
