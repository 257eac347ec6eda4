"""Async client for an OpenAI-compatible chat completions API.

Every failure (timeout, refused connection, HTTP error, malformed body, empty reply)
becomes a GeneratorError, so callers have exactly one thing to fall back on.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import aiohttp

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


async def chat(
    messages: List[Dict[str, str]],
    *,
    max_tokens: int = settings.LLM_MAX_TOKENS,
    temperature: float = settings.LLM_TEMPERATURE,
    n: int = 1,
    base_url: Optional[str] = None,
    timeout_s: Optional[float] = None,
) -> ChatReply:
    url = f"{base_url or settings.GENERATOR_URL}/chat/completions"
    body: Dict[str, Any] = {
        "model": settings.GENERATOR_MODEL,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "n": n,
    }
    headers = {"Content-Type": "application/json"}
    if settings.GENERATOR_API_KEY:
        headers["Authorization"] = f"Bearer {settings.GENERATOR_API_KEY}"
    timeout = aiohttp.ClientTimeout(
        total=timeout_s or settings.GENERATOR_TIMEOUT_S,
        sock_connect=settings.GENERATOR_CONNECT_TIMEOUT_S,
    )
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, json=body, headers=headers) as response:
                if response.status != 200:
                    raise GeneratorError(f"http {response.status}")
                payload = await response.json(content_type=None)
    except asyncio.TimeoutError as error:
        raise GeneratorError("timeout") from error
    except aiohttp.ClientError as error:
        raise GeneratorError(f"connection: {type(error).__name__}") from error
    except ValueError as error:  # the body is not JSON
        raise GeneratorError("bad response: not JSON") from error

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
