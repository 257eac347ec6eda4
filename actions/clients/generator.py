"""Async client for an OpenAI-compatible API: chat completions (n candidates in one
request) and embeddings.

Every failure (timeout, refused connection, HTTP error, malformed body, empty reply)
becomes a GeneratorError, so callers have exactly one thing to fall back on.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import aiohttp
import numpy as np

from actions import settings


class GeneratorError(Exception):
    """The generator could not produce a reply; `reason` is short and loggable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ChatReply:
    texts: List[str]
    model: str
    completion_tokens: Optional[int]
    latency_ms: int


@dataclass
class Embeddings:
    vectors: np.ndarray  # (len(texts), dimensions) float32, as the server sent them
    latency_ms: int


async def _post(path: str, body: Dict[str, Any], base_url: Optional[str], timeout_s: Optional[float]) -> Any:
    url = f"{base_url or settings.GENERATOR_URL}{path}"
    headers = {"Content-Type": "application/json"}
    if settings.GENERATOR_API_KEY:
        headers["Authorization"] = f"Bearer {settings.GENERATOR_API_KEY}"
    timeout = aiohttp.ClientTimeout(
        total=timeout_s or settings.GENERATOR_TIMEOUT_S,
        sock_connect=settings.GENERATOR_CONNECT_TIMEOUT_S,
    )
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, json=body, headers=headers) as response:
                if response.status != 200:
                    raise GeneratorError(f"http {response.status}")
                return await response.json(content_type=None)
    except asyncio.TimeoutError as error:
        raise GeneratorError("timeout") from error
    except aiohttp.ClientError as error:
        raise GeneratorError(f"connection: {type(error).__name__}") from error
    except ValueError as error:  # the body is not JSON
        raise GeneratorError("bad response: not JSON") from error


async def chat(
    messages: List[Dict[str, str]],
    *,
    max_tokens: int = settings.LLM_MAX_TOKENS,
    temperature: float = settings.LLM_TEMPERATURE,
    n: int = 1,
    seed: Optional[int] = None,
    frequency_penalty: float = 0.0,
    base_url: Optional[str] = None,
    timeout_s: Optional[float] = None,
) -> ChatReply:
    """n completions of one prompt, decoded together by the server (OpenAI's `n`)."""
    body: Dict[str, Any] = {
        "model": settings.GENERATOR_MODEL,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "n": n,
    }
    if seed is not None:
        body["seed"] = seed
    if frequency_penalty:  # only when used: the request is otherwise what it always was
        body["frequency_penalty"] = frequency_penalty
    started = time.monotonic()
    payload = await _post("/chat/completions", body, base_url, timeout_s)
    try:
        texts = [choice["message"]["content"].strip() for choice in payload["choices"]]
    except (KeyError, TypeError, AttributeError) as error:
        raise GeneratorError("bad response: no choices") from error
    texts = [text for text in texts if text]
    if not texts:
        raise GeneratorError("empty reply")
    usage = payload.get("usage") or {}
    return ChatReply(
        texts=texts,
        model=str(payload.get("model", settings.GENERATOR_MODEL)),
        completion_tokens=usage.get("completion_tokens"),
        latency_ms=int((time.monotonic() - started) * 1000),
    )


async def embed(
    texts: List[str],
    *,
    base_url: Optional[str] = None,
    timeout_s: Optional[float] = None,
) -> Embeddings:
    """One vector per text, in order, from the server's /embeddings."""
    body = {"model": settings.EMBEDDING_MODEL, "input": texts}
    started = time.monotonic()
    payload = await _post("/embeddings", body, base_url, timeout_s)
    try:
        data = sorted(payload["data"], key=lambda item: item["index"])
        vectors = np.array([item["embedding"] for item in data], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise GeneratorError("bad response: no embeddings") from error
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise GeneratorError("bad response: wrong number of embeddings")
    return Embeddings(vectors, int((time.monotonic() - started) * 1000))
