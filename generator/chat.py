"""SmolLM2-135M-Instruct on CPU with transformers: the default chat engine.

Stop sequences, cancellation and the deadline are checked by one StoppingCriteria
after every token, so the streamed and the non-streamed paths end at the same place
and a request that was given up on frees the worker within one decoding step.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .convert import ensure_chat_cache
from .engine import (
    CancelToken,
    ChatEngine,
    ChatResult,
    Completion,
    SamplingParams,
    find_stop,
    unsafe_suffix,
)
from .errors import Cancelled, InputTooLong
from .settings import CHAT_MODEL_ID, Settings

log = logging.getLogger("generator.chat")


class _StopCheck(StoppingCriteria):
    """Per sequence: done once a stop string appears; all done once cancelled."""

    def __init__(self, tokenizer, prompt_len: int, stops: tuple[str, ...], cancel: CancelToken):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = stops
        self.cancel = cancel
        self.interrupted = False

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        batch = input_ids.shape[0]
        if self.cancel.cancelled:
            self.interrupted = True
            return torch.ones(batch, dtype=torch.bool, device=input_ids.device)
        if not self.stops:
            return torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        done = [
            find_stop(self.tokenizer.decode(row[self.prompt_len :], skip_special_tokens=True), self.stops) >= 0
            for row in input_ids
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _DeltaStreamer(BaseStreamer):
    """Re-decodes the whole reply after each token and hands on only the settled part.

    Re-decoding (instead of decoding token by token, as TextIteratorStreamer does with
    word-boundary heuristics) makes the streamed pieces add up exactly to the
    non-streamed text; a reply is at most a few hundred tokens, so it is cheap.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...], on_delta: Callable[[str], None]):
        self.tokenizer = tokenizer
        self.stops = stops
        self.on_delta = on_delta
        self.tokens: list[int] = []
        self.sent = 0
        self._prompt_skipped = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_skipped:  # generate() first passes the prompt
            self._prompt_skipped = True
            return
        self.tokens.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        cut = find_stop(text, self.stops)
        settled = cut if cut >= 0 else len(text) - unsafe_suffix(text, self.stops)
        if settled > self.sent:
            self.on_delta(text[self.sent : settled])
            self.sent = settled

    def end(self) -> None:
        """The remainder is sent by the engine, from the same text generate() returns."""


class TransformersChatEngine(ChatEngine):
    def __init__(self, model, tokenizer, model_id: str = CHAT_MODEL_ID):
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)

    @classmethod
    def load(cls, settings: Settings) -> "TransformersChatEngine":
        path = ensure_chat_cache(settings)
        torch.set_num_threads(settings.threads)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.eval()
        log.info("chat model loaded from %s (%d torch threads)", path, torch.get_num_threads())
        return cls(model, tokenizer)

    def generate(self, messages, params: SamplingParams, cancel: CancelToken) -> ChatResult:
        # Greedy copies would be identical: decode once and repeat the answer.
        copies = 1 if params.greedy else params.n
        prompt_len, rows = self._run(messages, params, cancel, copies)
        completions = [self._finish(row, params) for row in rows]
        if len(completions) < params.n:
            completions = completions * params.n
        return ChatResult(prompt_len, completions)

    def stream(self, messages, params: SamplingParams, cancel: CancelToken, on_delta) -> ChatResult:
        streamer = _DeltaStreamer(self.tokenizer, params.stop, on_delta)
        prompt_len, rows = self._run(messages, params, cancel, 1, streamer)
        completion = self._finish(rows[0], params)
        if len(completion.text) > streamer.sent:
            on_delta(completion.text[streamer.sent :])
        return ChatResult(prompt_len, [completion])

    def _run(self, messages, params, cancel, copies, streamer=None) -> tuple[int, list[list[int]]]:
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_len = inputs["input_ids"].shape[1]
        if prompt_len + params.max_tokens > self.context_length:
            raise InputTooLong(
                f"prompt ({prompt_len} tokens) plus max_tokens ({params.max_tokens}) exceeds "
                f"the model's context of {self.context_length} tokens"
            )
        check = _StopCheck(self.tokenizer, prompt_len, params.stop, cancel)
        kwargs = dict(
            max_new_tokens=params.max_tokens,
            stopping_criteria=StoppingCriteriaList([check]),
            pad_token_id=self.pad_id,
            streamer=streamer,
        )
        if params.greedy:
            kwargs.update(do_sample=False)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          num_return_sequences=copies)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        if check.interrupted:
            raise Cancelled()
        return prompt_len, [row[prompt_len:].tolist() for row in output]

    def _finish(self, tokens: list[int], params: SamplingParams) -> Completion:
        hit_eos = False
        for i, token in enumerate(tokens):
            if token in self.eos_ids:  # the end of the reply, or padding after a stop string
                tokens, hit_eos = tokens[: i + 1], True
                break
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = find_stop(text, params.stop)
        if cut >= 0:
            if hit_eos:  # that EOS was padding: the stop string ended the sequence before it
                tokens = tokens[:-1]
            return Completion(text[:cut], "stop", len(tokens))
        return Completion(text, "stop" if hit_eos else "length", len(tokens))
