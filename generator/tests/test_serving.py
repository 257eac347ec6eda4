"""Concurrency and overload: the event loop stays free, the queue is bounded,
deadlines and disconnects stop the generation."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import httpx

from .conftest import assert_openai_error

STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
LONG = {"messages": STORY, "temperature": 0, "max_tokens": 200, "stream": True}


def _first_content(lines) -> None:
    for line in lines:
        if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
            return
    raise AssertionError("stream ended before any content")


def test_health_answers_during_generation(server):
    with server.client.stream("POST", "/v1/chat/completions", json=LONG) as r:
        lines = r.iter_lines()
        _first_content(lines)
        assert server.service.chat_pending == 1
        started = time.perf_counter()
        health = server.client.get("/health")
        elapsed = time.perf_counter() - started
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert elapsed < 0.5, elapsed
        assert server.service.chat_pending == 1  # still generating
        _first_content(lines)  # and still streaming afterwards
    # leaving the block closed the connection: the generation must stop
    assert server.wait_until(lambda: server.service.chat_pending == 0, 3)


def test_queue_full_gets_503_with_retry_after(make_server):
    small = make_server(max_batch=1, max_queue=1)
    results = {}
    with small.client.stream("POST", "/v1/chat/completions", json=LONG) as running:
        _first_content(running.iter_lines())
        waiting = threading.Thread(target=lambda: results.update(
            waiting=small.client.post("/v1/chat/completions",
                                      json={"messages": STORY, "temperature": 0, "max_tokens": 2})))
        waiting.start()
        assert small.wait_until(lambda: small.service.chat_pending == 2)
        refused = small.client.post("/v1/chat/completions", json={"messages": STORY, "max_tokens": 2})
        assert_openai_error(refused, 503, "queue_full")
        assert int(refused.headers["Retry-After"]) >= 1
    waiting.join(timeout=30)
    assert results["waiting"].status_code == 200


def test_many_embeddings_at_once_wait_instead_of_503(make_server):
    """Every answered turn embeds its question: 40 customers at once must all get vectors,
    even where the chat queue holds one (GENERATOR_MAX_EMBEDDING_QUEUE, not MAX_QUEUE)."""
    small = make_server(max_batch=1, max_queue=1)
    body = {"input": ["how long does a new card take to arrive?"] * 8}
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda _: small.client.post("/v1/embeddings", json=body).status_code, range(40)))
    assert statuses == [200] * 40


def test_timeout_gets_504_and_frees_the_worker(make_server):
    hasty = make_server(request_timeout_s=0.5)
    started = time.perf_counter()
    r = hasty.client.post("/v1/chat/completions", json={**LONG, "stream": False})
    assert_openai_error(r, 504, "timeout")
    assert time.perf_counter() - started < 3
    assert hasty.wait_until(lambda: hasty.service.chat_pending == 0, 2)


def test_timeout_mid_stream_ends_with_error_event(make_server):
    hasty = make_server(request_timeout_s=0.5)
    with hasty.client.stream("POST", "/v1/chat/completions", json=LONG) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "timeout"


def test_metrics_count_requests(server):
    server.client.get("/v1/models")
    text = server.client.get("/metrics").text
    assert 'generator_requests_total{route="/v1/models",status="200"}' in text
    assert "generator_request_duration_seconds_bucket" in text
    assert 'generator_queue_depth{worker="chat"}' in text


def test_client_that_gives_up_frees_the_worker(server):
    body = {**LONG, "stream": False}
    try:
        server.client.post("/v1/chat/completions", json=body, timeout=0.5)
    except httpx.ReadTimeout:
        pass
    else:
        raise AssertionError("a 200-token reply should take longer than 0.5 s")
    assert server.wait_until(lambda: server.service.chat_pending == 0, 2)
