"""The model interface the serving layer talks to, plus the engine-agnostic pieces.

The embedding engine is a plain synchronous object (the serving layer runs it on a
worker thread); the chat engine takes requests and answers through a callback from
its own batching thread, because many conversations decode together. Anything that
knows torch or transformers lives in chat.py / scheduler.py / embeddings.py, so a
different backend only has to implement these two small classes.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float  # 0 means greedy
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # logits[t] -= frequency_penalty * count + presence_penalty for every token t this
    # sequence generated (count > 0; the prompt does not count), before sampling or argmax.
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalised(self) -> bool:
        return self.frequency_penalty != 0 or self.presence_penalty != 0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    completion_tokens: int


@dataclass(frozen=True)
class ChatResult:
    prompt_tokens: int
    completions: list[Completion]


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: np.ndarray  # (len(texts), dimensions), float32, unit length
    prompt_tokens: int


class CancelToken:
    """Shared between the request and the worker thread: stop asap once set or overdue.

    Checked by the generation loop after every token, so a disconnected or timed-out
    request frees the single worker within one decoding step.
    """

    def __init__(self, deadline: float | None = None):
        self._event = threading.Event()
        self.deadline = deadline

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._event.is_set():
            return True
        return self.deadline is not None and time.monotonic() > self.deadline

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


# What a chat engine tells the submitter of a request, in this order, from its own thread:
#   ("started", None)   the request left the queue (prefill begins)
#   ("token", None)     the first token exists (time to first token)
#   ("delta", str)      settled text, only when streaming; the pieces add up to the final text
#   ("done", ChatResult) or ("error", BaseException)   exactly one of them, always, last
Sink = Callable[[str, object], None]


class ChatEngine(ABC):
    model_id: str

    @abstractmethod
    def submit(self, messages: list[dict[str, str]], params: SamplingParams, cancel: CancelToken,
               sink: Sink, stream: bool = False) -> None:
        """Queue a generation; raise errors.Overloaded when full, errors.InputTooLong when too long.

        sink gets the events above; an error is errors.Cancelled once cancel fired.
        """

    @property
    def pending(self) -> int:
        """Requests generating or waiting."""
        return 0

    def close(self) -> None:
        """Stop background work; pending requests get an error."""

    def generate(self, messages: list[dict[str, str]], params: SamplingParams, cancel: CancelToken) -> ChatResult:
        """Blocking convenience over submit (tests, scripts): params.n completions."""
        return self._wait(messages, params, cancel, None)

    def stream(self, messages: list[dict[str, str]], params: SamplingParams, cancel: CancelToken,
               on_delta: Callable[[str], None]) -> ChatResult:
        """Blocking: one completion, on_delta called with text pieces that add up to its text."""
        return self._wait(messages, params, cancel, on_delta)

    def _wait(self, messages, params, cancel, on_delta) -> ChatResult:
        finished = threading.Event()
        outcome: list = []

        def sink(kind: str, value) -> None:
            if kind == "delta" and on_delta is not None:
                on_delta(value)
            elif kind in ("done", "error"):
                outcome.append((kind, value))
                finished.set()

        self.submit(messages, params, cancel, sink, stream=on_delta is not None)
        finished.wait()
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value


class EmbeddingEngine(ABC):
    model_id: str
    dimensions: int

    @abstractmethod
    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Unit-length vectors, one per text, in order."""


def find_stop(text: str, stops: tuple[str, ...]) -> int:
    """Index where the earliest stop sequence starts, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def unsafe_suffix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the tail of text that must not be streamed yet.

    That is a tail that could still turn into a stop sequence, or an incomplete UTF-8
    character that the tokenizer decoded as U+FFFD for now.
    """
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    while hold < len(text) and text[len(text) - hold - 1] == "\ufffd":
        hold += 1
    return hold
