"""The serving layer: OpenAI requests in, engine calls, OpenAI responses out.

Routes stay thin; this is where request limits, model-name resolution, deadlines,
cancellation and the SSE framing live. Chat requests go to the chat engine's batching
scheduler (which answers from its own thread); embeddings run on a worker thread.
Errors are raised as generator.errors types.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import AsyncIterator

from .engine import CancelToken, ChatEngine, ChatResult, EmbeddingEngine, SamplingParams
from .errors import APIError, Cancelled, InputTooLong, InvalidRequest, ModelNotFound, NotReady, Timeout
from .protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChunkChoice,
    DeltaMessage,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingUsage,
    EmbeddingResponse,
    ErrorInfo,
    ModelCard,
    ModelList,
    Usage,
    new_chat_id,
)
from .settings import Settings
from .worker import Worker

log = logging.getLogger("generator.serving")

DEFAULT_ALIASES = {"", "default"}


def _same_model(name: str, model_id: str) -> bool:
    """Case-insensitive; "org/name" matches too, as vLLM clients name models that way."""
    name = name.strip().lower()
    return name == model_id.lower() or name.rsplit("/", 1)[-1] == model_id.lower()


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


def _chunk_json(chunk: ChatCompletionChunk) -> dict:
    """OpenAI's chunk shape: finish_reason always present, unset delta fields left out."""
    data = chunk.model_dump(mode="json")
    for choice in data["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    if data["usage"] is None:
        del data["usage"]
    return data


class _Events:
    """Carries a chat engine's events (sent from its thread) onto the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_first_token=None):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.on_first_token = on_first_token

    def __call__(self, kind: str, value) -> None:
        if kind == "token":
            if self.on_first_token is not None:
                self.on_first_token()
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone (server shut down): nobody is listening
            pass

    async def until(self, kinds: tuple[str, ...], timeout: float | None):
        while True:
            kind, value = await asyncio.wait_for(self.queue.get(), timeout)
            if kind in kinds:
                return kind, value


class Service:
    """Holds the engines (None until loaded) and the embeddings worker.

    Embeddings get their own worker thread: one for retrieval takes milliseconds and
    should not wait behind a batch of generations. With one torch thread each, the chat
    scheduler and the embeddings worker fit two cores.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.chat_engine: ChatEngine | None = None
        self.embedding_engine: EmbeddingEngine | None = None
        self.owns_chat_engine = False  # True when this service loaded it (and so closes it)
        self.load_error: str | None = None
        self.embedding_worker = Worker("embeddings", settings.max_embedding_queue)
        self.metrics = None  # generator.metrics.Metrics, set by the app

    @property
    def ready(self) -> bool:
        return self.chat_engine is not None and self.embedding_engine is not None

    def model_ids(self) -> list[str]:
        return [e.model_id for e in (self.chat_engine, self.embedding_engine) if e is not None]

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=m) for m in self.model_ids()])

    @property
    def chat_pending(self) -> int:
        """Chat requests generating or waiting."""
        return self.chat_engine.pending if self.chat_engine is not None else 0

    def shutdown(self) -> None:
        if self.owns_chat_engine and self.chat_engine is not None:
            self.chat_engine.close()
        self.embedding_worker.shutdown()

    # -- chat ---------------------------------------------------------------

    def _chat_engine_for(self, name: str | None) -> ChatEngine:
        engine = self.chat_engine
        if engine is None:
            raise NotReady("the models are still loading", headers={"Retry-After": "5"})
        if name is None or name.strip().lower() in DEFAULT_ALIASES or _same_model(name, engine.model_id):
            return engine
        raise ModelNotFound(f"model {name!r} does not serve chat completions; use {engine.model_id!r}")

    def _sampling(self, req: ChatCompletionRequest) -> SamplingParams:
        chars = sum(len(m.content) for m in req.messages)
        if chars > self.settings.max_input_chars:
            raise InputTooLong(
                f"messages have {chars} characters; the limit is {self.settings.max_input_chars}"
            )
        requested = req.max_completion_tokens or req.max_tokens or self.settings.default_max_tokens
        temperature = self.settings.default_temperature if req.temperature is None else req.temperature
        return SamplingParams(
            max_tokens=min(requested, self.settings.max_tokens_cap),
            temperature=temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            n=req.n,
            stop=tuple(req.stop),
            seed=req.seed,
            frequency_penalty=req.frequency_penalty or 0.0,
            presence_penalty=req.presence_penalty or 0.0,
        )

    def _start_chat(self, req: ChatCompletionRequest, stream: bool):
        """Validate and queue the request (503 at once when the queue is full)."""
        engine = self._chat_engine_for(req.model)
        params = self._sampling(req)
        if stream and params.n != 1:
            raise InvalidRequest("stream=true supports only n=1", code="unsupported_parameter")
        messages = [m.model_dump() for m in req.messages]
        started = time.monotonic()
        cancel = CancelToken(started + self.settings.request_timeout_s)
        metrics = self.metrics
        on_first = None if metrics is None else (lambda: metrics.ttft.observe(time.monotonic() - started))
        events = _Events(asyncio.get_running_loop(), on_first)
        engine.submit(messages, params, cancel, events, stream=stream)
        return engine, cancel, events, started

    def _observe(self, result: ChatResult, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_chat(result, time.monotonic() - started)

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        engine, cancel, events, started = self._start_chat(req, stream=False)
        try:
            kind, value = await events.until(("done", "error"), cancel.remaining())
        except asyncio.TimeoutError:
            raise Timeout("the request did not finish within the server's time limit") from None
        finally:  # a timeout, a client that went away (task cancelled), or just done
            cancel.cancel()
        if kind == "error":
            if isinstance(value, Cancelled):  # the deadline, seen first by the scheduler
                raise Timeout("the request did not finish within the server's time limit")
            raise value
        result: ChatResult = value
        self._observe(result, started)
        completion_tokens = sum(c.completion_tokens for c in result.completions)
        return ChatCompletionResponse(
            model=engine.model_id,
            choices=[
                ChatChoice(index=i, message=AssistantMessage(content=c.text), finish_reason=c.finish_reason)
                for i, c in enumerate(result.completions)
            ],
            usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=result.prompt_tokens + completion_tokens),
        )

    async def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[str]:
        """Queue the generation and wait until it leaves the queue, then hand back the SSE stream.

        Waiting for the start here means a full queue (503) or a deadline missed while
        queued (504) is still a proper HTTP status, not an error inside a 200 stream.
        """
        engine, cancel, events, started = self._start_chat(req, stream=True)
        try:
            kind, value = await events.until(("started", "error"), cancel.remaining())
        except BaseException as exc:
            cancel.cancel()
            if isinstance(exc, asyncio.TimeoutError):
                raise Timeout("the request waited in the queue past the server's time limit") from None
            raise
        if kind == "error":
            cancel.cancel()
            if isinstance(value, Cancelled):
                raise Timeout("the request waited in the queue past the server's time limit")
            raise value
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return self._sse_events(engine.model_id, events, cancel, include_usage, started)

    async def _sse_events(self, model_id: str, events: _Events, cancel: CancelToken,
                          include_usage: bool, started: float) -> AsyncIterator[str]:
        chunk_id, created = new_chat_id(), int(time.time())

        def chunk(delta: DeltaMessage, finish=None, usage=None, choices=True) -> str:
            body = ChatCompletionChunk(
                id=chunk_id, created=created, model=model_id, usage=usage,
                choices=[ChunkChoice(delta=delta, finish_reason=finish)] if choices else [],
            )
            return sse(_chunk_json(body))

        try:
            yield chunk(DeltaMessage(role="assistant", content=""))
            while True:
                try:
                    kind, value = await events.until(("delta", "done", "error"), cancel.remaining())
                except asyncio.TimeoutError:
                    kind, value = "error", Timeout("generation exceeded the server's time limit")
                if kind == "error" and isinstance(value, Cancelled):  # the deadline, seen first by the scheduler
                    value = Timeout("generation exceeded the server's time limit")
                if kind == "delta":
                    yield chunk(DeltaMessage(content=value))
                    continue
                if kind == "done":
                    self._observe(value, started)
                    completion = value.completions[0]
                    yield chunk(DeltaMessage(), finish=completion.finish_reason)
                    if include_usage:
                        used = value.prompt_tokens + completion.completion_tokens
                        usage = Usage(prompt_tokens=value.prompt_tokens,
                                      completion_tokens=completion.completion_tokens, total_tokens=used)
                        yield chunk(DeltaMessage(), usage=usage, choices=False)
                else:  # a 200 is already sent: report the error inside the stream, as vLLM does
                    if not isinstance(value, Timeout):
                        log.error("streamed generation failed", exc_info=value)
                    yield sse({"error": _error_info(value).model_dump()})
                yield sse("[DONE]")
                return
        finally:
            cancel.cancel()  # a client that disconnected stops the generation

    # -- embeddings ---------------------------------------------------------

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        engine = self.embedding_engine
        if engine is None:
            raise NotReady("the models are still loading", headers={"Retry-After": "5"})
        if req.model is not None and req.model.strip().lower() not in DEFAULT_ALIASES \
                and not _same_model(req.model, engine.model_id):
            raise ModelNotFound(f"model {req.model!r} does not serve embeddings; use {engine.model_id!r}")
        if req.dimensions is not None and req.dimensions != engine.dimensions:
            raise InvalidRequest(f"{engine.model_id} has exactly {engine.dimensions} dimensions",
                                 code="unsupported_parameter")
        texts = req.input
        if len(texts) > self.settings.max_embedding_inputs:
            raise InvalidRequest(
                f"{len(texts)} inputs; the limit is {self.settings.max_embedding_inputs} per request")
        longest = max(len(t) for t in texts)
        if longest > self.settings.max_input_chars:
            raise InputTooLong(f"an input has {longest} characters; the limit is {self.settings.max_input_chars}")
        cancel = CancelToken(time.monotonic() + self.settings.request_timeout_s)
        result = await self.embedding_worker.run(lambda: engine.embed(texts), cancel)
        if req.encoding_format == "base64":  # what the official openai client asks for by default
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in result.vectors]
        else:
            data = [v.tolist() for v in result.vectors]
        return EmbeddingResponse(
            model=engine.model_id,
            data=[EmbeddingData(index=i, embedding=e) for i, e in enumerate(data)],
            usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
        )


def _error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, APIError):
        return ErrorInfo(message=exc.message, type=exc.error_type, code=exc.code)
    return ErrorInfo(message="internal error while generating", type="server_error", code="internal_error")
