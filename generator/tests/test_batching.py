"""Continuous batching: requests that decode together get exactly what they get alone,
rows join and leave between steps, the shared system prompt is computed once, and
every request ends with an answer or an error."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest
import torch

from generator.chat import TransformersChatEngine
from generator.engine import CancelToken, SamplingParams
from generator.errors import Cancelled

from .conftest import assert_openai_error

SYSTEM = ("You are the customer support assistant of Lakeside Bank. Answer the customer's last message "
          "in one or two short, polite sentences.")
QUESTIONS = ["How do I activate my new card?", "My card was stolen, what do I do?",
             "Why was my transfer declined?", "Can I change my PIN?"]
GREEDY = SamplingParams(max_tokens=24, temperature=0)


def conversation(question: str, system: str = SYSTEM) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


@pytest.fixture
def engine(engines, settings):
    """A fresh engine (own scheduler and prefix cache) around the shared model."""
    chat = TransformersChatEngine(engines[0].model, engines[0].tokenizer, settings)
    yield chat
    chat.close()


def reference(engine, messages, max_tokens: int) -> str:
    """What plain model.generate() answers, greedy and alone: the fp32 reference."""
    inputs = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)
    with torch.inference_mode():
        out = engine.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                    pad_token_id=engine.pad_id)
    return engine.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def run_all(engine, conversations, delays=None) -> list[str]:
    delays = delays or [0.0] * len(conversations)

    def one(i: int) -> str:
        time.sleep(delays[i])
        return engine.generate(conversations[i], GREEDY, CancelToken()).completions[0].text

    with concurrent.futures.ThreadPoolExecutor(len(conversations)) as pool:
        return list(pool.map(one, range(len(conversations))))


def test_two_concurrent_requests_match_their_single_runs(engine):
    pair = [conversation(QUESTIONS[0]), [{"role": "user", "content": "Write a poem about the sea."}]]
    alone = [engine.generate(c, GREEDY, CancelToken()).completions[0].text for c in pair]
    assert alone == [reference(engine, c, GREEDY.max_tokens) for c in pair]
    steps = engine.scheduler.stats.batch_buckets[1]  # steps that decoded exactly two rows
    together = run_all(engine, pair)
    assert engine.scheduler.stats.batch_buckets[1] > steps  # they really shared decode steps
    assert together == alone


def test_rows_joining_mid_decode_match_the_reference(engine):
    conversations = [conversation(q) for q in QUESTIONS]
    expected = [reference(engine, c, GREEDY.max_tokens) for c in conversations]
    assert run_all(engine, conversations, delays=[0.0, 0.3, 0.6, 0.9]) == expected
    stats = engine.scheduler.stats
    assert stats.batch_rows_sum > stats.steps  # some steps carried several rows


def test_shared_system_prompt_is_computed_once(engine):
    conversations = [conversation(q) for q in QUESTIONS]
    expected = [reference(engine, c, GREEDY.max_tokens) for c in conversations]
    first = engine.generate(conversations[0], GREEDY, CancelToken()).completions[0].text
    computed = engine.scheduler.stats.prefilled_tokens
    assert len(engine.prefixes) == 1
    rest = run_all(engine, conversations[1:])
    assert [first, *rest] == expected
    prompt_lens = [len(engine.prompt_tokens(c)[0]) for c in conversations[1:]]
    _, system_len = engine.prompt_tokens(conversations[1])
    assert system_len > 20
    assert engine.scheduler.stats.prefilled_tokens - computed == sum(prompt_lens) - 3 * system_len
    assert engine.prefixes.hits >= 3


def test_sampled_rows_are_repeatable_with_a_seed(engine):
    params = SamplingParams(max_tokens=8, temperature=1.0, n=2, seed=11)
    first = engine.generate(conversation(QUESTIONS[1]), params, CancelToken())
    again = engine.generate(conversation(QUESTIONS[1]), params, CancelToken())
    assert [c.text for c in first.completions] == [c.text for c in again.completions]
    assert len(first.completions) == 2


def test_n_sampled_rows_share_one_prefill_and_decode_together(engine):
    """OpenAI's n: the prompt is computed once and its n rows decode in the same steps."""
    story = conversation("Write a long story about a dragon who learns to bake bread.")
    prompt_len = len(engine.prompt_tokens(story)[0])
    result = engine.generate(story, SamplingParams(max_tokens=6, temperature=1.0, n=3, seed=5), CancelToken())
    stats = engine.scheduler.stats
    assert len(result.completions) == 3
    assert all(c.completion_tokens == 6 for c in result.completions)  # no row ended early
    assert stats.prefilled_tokens == prompt_len  # once, not three times
    assert stats.steps == 5 and stats.batch_rows_sum == 15  # first tokens come from the prefill
    assert len({c.text for c in result.completions}) > 1  # sampled rows differ


def test_a_tiny_top_p_keeps_only_the_likeliest_token(engine):
    nucleus = SamplingParams(max_tokens=12, temperature=1.0, top_p=1e-6, seed=3)
    greedy = SamplingParams(max_tokens=12, temperature=0)
    sampled = engine.generate(conversation(QUESTIONS[0]), nucleus, CancelToken()).completions[0].text
    assert sampled == engine.generate(conversation(QUESTIONS[0]), greedy, CancelToken()).completions[0].text


def test_a_penalised_row_and_a_plain_row_decode_together_as_they_do_alone(engine):
    """The penalties of one request touch only its rows of the batch."""
    repeat = [{"role": "user", "content": "Write the word 'money' ten times."}]
    penalised = SamplingParams(max_tokens=16, temperature=0, frequency_penalty=2.0)
    plain = SamplingParams(max_tokens=16, temperature=0)
    jobs = [(repeat, plain), (repeat, penalised)]
    alone = [engine.generate(messages, params, CancelToken()).completions[0].text for messages, params in jobs]
    assert alone[0] != alone[1]
    steps = engine.scheduler.stats.batch_buckets[1]  # steps that decoded exactly two rows
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda job: engine.generate(*job, CancelToken()).completions[0].text, jobs))
    assert engine.scheduler.stats.batch_buckets[1] > steps
    assert together == alone


def test_a_cancelled_row_leaves_and_the_others_are_unaffected(engine):
    long = SamplingParams(max_tokens=200, temperature=0)
    story = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
    cancel = CancelToken()
    outcome = {}

    def doomed() -> None:
        try:
            engine.generate(story, long, cancel)
        except Cancelled as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=doomed)
    thread.start()
    time.sleep(0.5)
    expected = reference(engine, conversation(QUESTIONS[2]), GREEDY.max_tokens)
    survivor = concurrent.futures.ThreadPoolExecutor(1).submit(
        engine.generate, conversation(QUESTIONS[2]), GREEDY, CancelToken())
    time.sleep(0.5)
    cancel.cancel()
    thread.join(timeout=10)
    assert isinstance(outcome.get("error"), Cancelled)
    assert survivor.result(timeout=30).completions[0].text == expected
    assert engine.pending == 0


def test_a_failing_model_fails_its_requests_instead_of_hanging(engines, settings):
    chat = TransformersChatEngine(engines[0].model, engines[0].tokenizer, settings)
    try:
        class Broken:
            config = engines[0].model.config

            def __call__(self, *args, **kwargs):
                raise RuntimeError("simulated failure")

        chat.scheduler.model = Broken()
        with pytest.raises(RuntimeError, match="simulated"):
            chat.generate(conversation(QUESTIONS[0]), GREEDY, CancelToken())
        chat.scheduler.model = engines[0].model  # the loop survives and serves the next one
        assert chat.generate(conversation(QUESTIONS[0]), GREEDY, CancelToken()).completions[0].text
    finally:
        chat.close()


def test_overload_is_shed_and_every_request_is_answered(make_server):
    small = make_server(max_batch=2, max_queue=2)
    body = {"messages": conversation(QUESTIONS[0]), "temperature": 0, "max_tokens": 16}

    def call(_: int) -> httpx.Response:
        return small.client.post("/v1/chat/completions", json=body)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(call, range(10)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 4  # the batch and the queue were used in full
    for refused in (r for r in responses if r.status_code == 503):
        assert_openai_error(refused, 503, "queue_full")
        assert int(refused.headers["Retry-After"]) >= 1
    texts = {r.json()["choices"][0]["message"]["content"] for r in responses if r.status_code == 200}
    assert len(texts) == 1  # batched or not, the same greedy answer
    assert small.wait_until(lambda: small.service.chat_pending == 0)


def test_metrics_show_batching(server):
    body = {"messages": conversation(QUESTIONS[3]), "temperature": 0, "max_tokens": 4}
    assert server.client.post("/v1/chat/completions", json=body).status_code == 200
    text = server.client.get("/metrics").text
    for name in ("generator_time_to_first_token_seconds_bucket", "generator_chat_latency_seconds_count",
                 'generator_tokens_total{kind="completion"}', 'generator_tokens_total{kind="prompt"}',
                 "generator_batch_size_bucket", "generator_chat_waiting", "generator_batch_rows",
                 'generator_prefix_cache_lookups_total{result="hit"}', "generator_decode_steps_total"):
        assert name in text, name
