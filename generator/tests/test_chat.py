"""Chat completions against the real SmolLM2 model."""

from __future__ import annotations

import json

import pytest

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def chat(server, **body):
    body.setdefault("messages", QUESTION)
    return server.client.post("/v1/chat/completions", json=body)


def stream_events(server, **body) -> list[str]:
    """The raw `data:` payloads of a streamed completion, in order."""
    body.setdefault("messages", QUESTION)
    with server.client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]


def test_models_lists_both(server):
    r = server.client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {"SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"}


def test_completion_shape_and_usage(server, engines):
    r = chat(server, temperature=0, max_tokens=16)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "SmolLM2-135M-Instruct"
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    tokenizer = engines[0].tokenizer
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=True)["input_ids"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(prompt)
    assert 1 <= usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_max_tokens_is_respected(server):
    body = chat(server, messages=STORY, temperature=0, max_tokens=5).json()
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"
    # max_completion_tokens (the newer OpenAI name) wins over max_tokens
    body = chat(server, messages=STORY, temperature=0, max_tokens=50, max_completion_tokens=3).json()
    assert body["usage"]["completion_tokens"] == 3


def test_greedy_is_deterministic(server):
    first = chat(server, messages=STORY, temperature=0, max_tokens=12).json()
    second = chat(server, messages=STORY, temperature=0, max_tokens=12).json()
    assert first["choices"][0]["message"]["content"]
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]


def test_n_returns_n_choices(server):
    body = chat(server, messages=STORY, temperature=1.0, n=3, max_tokens=5, seed=7).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 15  # none can end in 5 tokens of a long story
    greedy = chat(server, temperature=0, n=2, max_tokens=8).json()
    assert len({c["message"]["content"] for c in greedy["choices"]}) == 1


def test_n_candidates_repeat_with_a_seed_and_count_the_prompt_once(server):
    body = {"messages": STORY, "temperature": 0.7, "n": 3, "max_tokens": 6, "seed": 42}
    first, again = chat(server, **body).json(), chat(server, **body).json()
    texts = [c["message"]["content"] for c in first["choices"]]
    assert texts == [c["message"]["content"] for c in again["choices"]]
    assert all(texts) and len(set(texts)) > 1
    one = chat(server, messages=STORY, temperature=0, max_tokens=1).json()
    assert first["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]  # one prompt for the n rows


def test_seed_makes_sampling_repeatable(server):
    a = chat(server, messages=STORY, temperature=1.0, max_tokens=8, seed=123).json()
    b = chat(server, messages=STORY, temperature=1.0, max_tokens=8, seed=123).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_stop_sequence_cuts_the_reply(server):
    body = chat(server, temperature=0, max_tokens=16, stop=[" is"]).json()
    assert body["choices"][0]["message"]["content"] == "The capital of France"
    assert body["choices"][0]["finish_reason"] == "stop"


REPEAT = [{"role": "user", "content": "Write the word 'money' ten times."}]


def repeated_tokens(engines, text: str) -> int:
    tokens = engines[0].tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(tokens) - len(set(tokens))


@pytest.mark.parametrize("penalty", ["frequency_penalty", "presence_penalty"])
def test_a_penalty_makes_greedy_replies_repeat_less(server, engines, penalty):
    body = {"messages": REPEAT, "temperature": 0, "max_tokens": 16}
    plain = chat(server, **body).json()["choices"][0]["message"]["content"]
    assert repeated_tokens(engines, plain) >= 8  # "Money ten times:" over and over
    zero = chat(server, **body, **{penalty: 0}).json()["choices"][0]["message"]["content"]
    assert zero == plain  # 0 is the same as leaving it out
    penalised = [chat(server, **body, **{penalty: 2.0}).json()["choices"][0]["message"]["content"]
                 for _ in range(2)]
    assert penalised[0] == penalised[1]  # still greedy: deterministic
    assert repeated_tokens(engines, penalised[0]) < repeated_tokens(engines, plain) / 2


def test_each_choice_counts_only_its_own_tokens(server):
    """Two rows decoded together (sampled, but top_p keeps only the likeliest token) get
    exactly the penalised greedy reply each: neither is penalised for the other's tokens."""
    body = {"messages": REPEAT, "max_tokens": 12, "frequency_penalty": 1.5}
    greedy = chat(server, **body, temperature=0).json()["choices"][0]["message"]["content"]
    assert greedy != chat(server, **{**body, "frequency_penalty": 0}, temperature=0).json()[
        "choices"][0]["message"]["content"]
    both = chat(server, **body, temperature=1.0, top_p=1e-6, n=2, seed=1).json()
    assert [c["message"]["content"] for c in both["choices"]] == [greedy, greedy]
    assert chat(server, **body, temperature=0, n=2).json()["choices"][1]["message"]["content"] == greedy


@pytest.mark.parametrize("extra", [{"max_tokens": 24}, {"max_tokens": 16, "stop": "Paris"}])
def test_stream_matches_non_streamed(server, extra):
    messages = STORY if "stop" not in extra else QUESTION
    expected = chat(server, messages=messages, temperature=0, **extra).json()["choices"][0]
    events = stream_events(server, messages=messages, temperature=0, **extra)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:]]
    assert len([d for d in deltas if d]) > 1  # really streamed, not one blob
    assert "".join(deltas) == expected["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == expected["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_stream_usage_chunk(server):
    events = stream_events(server, temperature=0, max_tokens=4, messages=STORY,
                           stream_options={"include_usage": True})
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize("name", [None, "default", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_model_name_aliases(server, name):
    body = {"max_tokens": 1, "temperature": 0}
    if name is not None:
        body["model"] = name
    r = chat(server, **body)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "SmolLM2-135M-Instruct"
