"""The serving layer: OpenAI requests in, engine calls on the workers, OpenAI responses out.

Routes stay thin; this is where request limits, model-name resolution, the queue,
deadlines and the SSE framing live. Errors are raised as generator.errors types.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import AsyncIterator

from .engine import CancelToken, ChatEngine, EmbeddingEngine, SamplingParams
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


class Service:
    """Holds the engines (None until loaded) and one worker per model.

    Two workers, not one: an embedding for retrieval takes milliseconds and should not
    wait behind a ten-second generation. With one torch thread each they fit two cores.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.chat_engine: ChatEngine | None = None
        self.embedding_engine: EmbeddingEngine | None = None
        self.load_error: str | None = None
        self.chat_worker = Worker("chat", settings.max_queue)
        self.embedding_worker = Worker("embeddings", settings.max_queue)

    @property
    def ready(self) -> bool:
        return self.chat_engine is not None and self.embedding_engine is not None

    def model_ids(self) -> list[str]:
        return [e.model_id for e in (self.chat_engine, self.embedding_engine) if e is not None]

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=m) for m in self.model_ids()])

    def shutdown(self) -> None:
        self.chat_worker.shutdown()
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
        )

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        engine = self._chat_engine_for(req.model)
        params = self._sampling(req)
        messages = [m.model_dump() for m in req.messages]
        cancel = CancelToken(time.monotonic() + self.settings.request_timeout_s)
        result = await self.chat_worker.run(lambda: engine.generate(messages, params, cancel), cancel)
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
        """Queue the generation and wait until it starts, then hand back the SSE stream.

        Waiting for the start here means a full queue (503) or a deadline missed while
        queued (504) is still a proper HTTP status, not an error inside a 200 stream.
        """
        engine = self._chat_engine_for(req.model)
        params = self._sampling(req)
        if params.n != 1:
            raise InvalidRequest("stream=true supports only n=1", code="unsupported_parameter")
        messages = [m.model_dump() for m in req.messages]
        cancel = CancelToken(time.monotonic() + self.settings.request_timeout_s)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def push(kind: str, value=None) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        def job() -> None:
            push("started")
            try:
                push("done", engine.stream(messages, params, cancel, lambda text: push("delta", text)))
            except BaseException as exc:  # handed to the event loop, which reports it
                push("error", exc)

        future = self.chat_worker.submit(job, cancel)
        try:
            await asyncio.wait_for(events.get(), cancel.remaining())
        except BaseException as exc:
            cancel.cancel()
            future.cancel()
            if isinstance(exc, asyncio.TimeoutError):
                raise Timeout("the request waited in the queue past the server's time limit") from None
            raise
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return self._sse_events(engine.model_id, events, cancel, include_usage)

    async def _sse_events(self, model_id: str, events: asyncio.Queue, cancel: CancelToken,
                          include_usage: bool) -> AsyncIterator[str]:
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
                    kind, value = await asyncio.wait_for(events.get(), cancel.remaining())
                except asyncio.TimeoutError:
                    kind, value = "error", Timeout("generation exceeded the server's time limit")
                if kind == "error" and isinstance(value, Cancelled):  # the deadline, seen first by the worker
                    value = Timeout("generation exceeded the server's time limit")
                if kind == "delta":
                    yield chunk(DeltaMessage(content=value))
                    continue
                if kind == "done":
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
