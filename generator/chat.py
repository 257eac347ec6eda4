"""SmolLM2-135M-Instruct on CPU with transformers: the default chat engine.

Prompts are built with the model's chat template and handed to the batching
scheduler (generator.scheduler); this module owns the text side of a request: stop
sequences, the streamed deltas and the final completions. The streamed and the
non-streamed paths share one listener, so they end at the same place.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .convert import ensure_chat_cache
from .engine import (
    CancelToken,
    ChatEngine,
    ChatResult,
    Completion,
    SamplingParams,
    Sink,
    find_stop,
    unsafe_suffix,
)
from .errors import InputTooLong
from .kvcache import PrefixStore
from .scheduler import Listener, Request, Scheduler
from .settings import CHAT_MODEL_ID, Settings

log = logging.getLogger("generator.chat")


class _TextListener(Listener):
    """Turns a request's tokens into sink events: stop strings, streamed deltas, completions.

    A streamed reply is re-decoded whole after each token and only its settled part is
    sent (not token by token, as TextIteratorStreamer does with word-boundary
    heuristics), so the pieces add up exactly to the non-streamed text; a reply is at
    most a few hundred tokens, so it is cheap.
    """

    def __init__(self, engine: "TransformersChatEngine", params: SamplingParams, prompt_tokens: int,
                 sink: Sink, stream: bool):
        self.engine = engine
        self.params = params
        self.prompt_tokens = prompt_tokens
        self.sink = sink
        self.stream = stream
        self.sent = 0
        self.first = True

    def started(self) -> None:
        self.sink("started", None)

    def token(self, row: int, tokens: list[int]) -> bool:
        if self.first:
            self.first = False
            self.sink("token", None)
        if not self.stream and not self.params.stop:
            return False
        text = self.engine.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = find_stop(text, self.params.stop)
        if self.stream:
            settled = cut if cut >= 0 else len(text) - unsafe_suffix(text, self.params.stop)
            if settled > self.sent:
                self.sink("delta", text[self.sent : settled])
                self.sent = settled
        return cut >= 0

    def finished(self, rows: list[list[int]]) -> None:
        completions = [self.engine.completion(tokens, self.params) for tokens in rows]
        if len(completions) < self.params.n:  # greedy copies would be identical: decoded once
            completions = completions * self.params.n
        if self.stream and len(completions[0].text) > self.sent:
            self.sink("delta", completions[0].text[self.sent :])
        self.sink("done", ChatResult(self.prompt_tokens, completions))

    def failed(self, error: BaseException) -> None:
        self.sink("error", error)


class TransformersChatEngine(ChatEngine):
    def __init__(self, model, tokenizer, settings: Settings | None = None, model_id: str = CHAT_MODEL_ID):
        settings = settings or Settings()
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.prefixes = PrefixStore(settings.prefix_cache_entries)
        self._template = lru_cache(maxsize=64)(self._render)  # the system prompt repeats in every request
        self.scheduler = Scheduler(
            model, eos_ids=self.eos_ids, pad_id=self.pad_id, max_batch=settings.max_batch,
            max_queue=settings.max_queue, prefill_tokens=settings.prefill_tokens,
            prefix_store=self.prefixes, threads=settings.threads,
        )

    @classmethod
    def load(cls, settings: Settings) -> "TransformersChatEngine":
        path = ensure_chat_cache(settings)
        torch.set_num_threads(settings.threads)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, settings.torch_dtype))
        model.eval()
        engine = cls(model, tokenizer, settings)
        started = time.monotonic()
        engine.generate([{"role": "user", "content": "Hi"}], SamplingParams(max_tokens=2, temperature=0),
                        CancelToken(time.monotonic() + 60))  # first forward passes allocate; pay that now
        log.info("chat model loaded from %s (%s, %d torch threads, batches of up to %d, warm-up %.1f s)",
                 path, settings.torch_dtype, settings.threads, settings.max_batch, time.monotonic() - started)
        return engine

    @property
    def pending(self) -> int:
        return self.scheduler.pending

    def close(self) -> None:
        self.scheduler.close()

    def prompt_tokens(self, messages: list[dict[str, str]]) -> tuple[list[int], int]:
        """The prompt's token ids, and how many leading ones are the (shareable) system prompt."""
        prompt = self._template(tuple((m["role"], m["content"]) for m in messages), True)
        prefix_len = 0
        if messages[0]["role"] == "system":
            system = self._template(((messages[0]["role"], messages[0]["content"]),), False)
            if len(system) < len(prompt) and prompt[: len(system)] == system:
                prefix_len = len(system)
        return prompt, prefix_len

    def _render(self, messages: tuple[tuple[str, str], ...], generation_prompt: bool) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            [{"role": role, "content": content} for role, content in messages],
            add_generation_prompt=generation_prompt, return_dict=True,
        )
        return list(encoded["input_ids"])

    def submit(self, messages, params: SamplingParams, cancel: CancelToken, sink: Sink, stream: bool = False) -> None:
        prompt, prefix_len = self.prompt_tokens(messages)
        if len(prompt) + params.max_tokens > self.context_length:
            raise InputTooLong(
                f"prompt ({len(prompt)} tokens) plus max_tokens ({params.max_tokens}) exceeds "
                f"the model's context of {self.context_length} tokens"
            )
        generator = None
        if not params.greedy and params.seed is not None:
            generator = torch.Generator().manual_seed(params.seed)
        listener = _TextListener(self, params, len(prompt), sink, stream)
        self.scheduler.submit(Request(prompt=prompt, params=params, cancel=cancel, listener=listener,
                                      rows=1 if params.greedy else params.n, prefix_len=prefix_len,
                                      generator=generator))

    def completion(self, tokens: list[int], params: SamplingParams) -> Completion:
        hit_eos = False
        for i, token in enumerate(tokens):
            if token in self.eos_ids:  # the end of the reply
                tokens, hit_eos = tokens[: i + 1], True
                break
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = find_stop(text, params.stop)
        if cut >= 0:
            return Completion(text[:cut], "stop", len(tokens))
        return Completion(text, "stop" if hit_eos else "length", len(tokens))
