"""Async client for OpenAI-compatible APIs: chat completions (n candidates in one
request) from GENERATOR_URL and embeddings from EMBEDDINGS_URL (GENERATOR_URL when not
set), so chat can go to vLLM while embeddings stay on the CPU generator.

Every failure (timeout, refused connection, HTTP error, malformed body, empty reply)
becomes a GeneratorError, so callers have exactly one thing to fall back on.

One aiohttp ClientSession per process (per event loop: tests run each scenario in a
loop of its own) keeps connections to the servers open between turns; the action
server closes it when it stops (`close`, actions/server.py).
"""
from __future__ import annotations

import asyncio
import atexit
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import aiohttp
import numpy as np

from assistant import logs
from assistant import settings


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


# Connections kept open between requests are dropped after this many idle seconds:
# under uvicorn's 5 s (the generator, vLLM), so a request never goes out on a
# connection the server is closing.
KEEPALIVE_S = 4.0

_session: Optional[aiohttp.ClientSession] = None
_session_loop: Optional[asyncio.AbstractEventLoop] = None


def _abandon() -> None:
    """Drop a session whose event loop has ended (asyncio.run in tests, or the process
    exiting without the server's shutdown): its connections belong to that loop and can
    be neither reused nor awaited, so they are closed synchronously."""
    global _session
    session, _session = _session, None
    if session is not None and not session.closed:
        connector = session.connector
        session.detach()
        if connector is not None:
            connector._close()  # noqa: SLF001 - the synchronous part of close(); no loop to await on


atexit.register(_abandon)


def _client_session() -> aiohttp.ClientSession:
    """The process's session, made on first use in the running event loop."""
    global _session, _session_loop
    loop = asyncio.get_running_loop()
    if _session is not None and _session_loop is not loop:
        _abandon()
    if _session is None or _session.closed:
        # No limit on connections: the servers shed load themselves (503), as before.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)
        _session, _session_loop = aiohttp.ClientSession(connector=connector), loop
    return _session


async def close() -> None:
    """Close the process's session (the action server calls it when it stops)."""
    global _session
    session, _session = _session, None
    if session is not None and not session.closed and _session_loop is asyncio.get_running_loop():
        await session.close()


def embeddings_url() -> str:
    """EMBEDDINGS_URL, or GENERATOR_URL when it is not set."""
    return settings.EMBEDDINGS_URL or settings.GENERATOR_URL


async def _post(path: str, body: Dict[str, Any], base_url: str, timeout_s: Optional[float],
                api_key: str = "") -> Any:
    url = f"{base_url}{path}"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if logs.request_id.get():  # the customer turn this call belongs to (assistant/logs.py)
        headers[logs.REQUEST_ID_HEADER] = logs.request_id.get()
    total = timeout_s or settings.GENERATOR_TIMEOUT_S
    deadline = time.monotonic() + total
    session = _client_session()
    for attempt in (1, 2):
        timeout = aiohttp.ClientTimeout(
            total=max(deadline - time.monotonic(), 0.001),
            sock_connect=settings.GENERATOR_CONNECT_TIMEOUT_S,
        )
        try:
            async with session.post(url, json=body, headers=headers, timeout=timeout) as response:
                if response.status != 200:
                    raise GeneratorError(f"http {response.status}")
                return await response.json(content_type=None)
        except aiohttp.ServerDisconnectedError as error:
            # A kept-alive connection the server closed as the request went out: once more,
            # on a new connection (a server that died fails again, at once).
            if attempt == 1 and time.monotonic() < deadline:
                continue
            raise GeneratorError(f"connection: {type(error).__name__}") from error
        except asyncio.TimeoutError as error:
            raise GeneratorError("timeout") from error
        except aiohttp.ClientError as error:
            raise GeneratorError(f"connection: {type(error).__name__}") from error
        except ValueError as error:  # the body is not JSON
            raise GeneratorError("bad response: not JSON") from error
    raise AssertionError("unreachable")


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
    payload = await _post("/chat/completions", body, base_url or settings.GENERATOR_URL, timeout_s,
                          settings.GENERATOR_API_KEY)
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
    """One vector per text, in order, from the embeddings server's /embeddings
    (`base_url` instead, when given)."""
    body = {"model": settings.EMBEDDINGS_MODEL, "input": texts}
    started = time.monotonic()
    payload = await _post("/embeddings", body, base_url or embeddings_url(), timeout_s,
                          settings.EMBEDDINGS_API_KEY)
    try:
        data = sorted(payload["data"], key=lambda item: item["index"])
        vectors = np.array([item["embedding"] for item in data], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise GeneratorError("bad response: no embeddings") from error
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise GeneratorError("bad response: wrong number of embeddings")
    return Embeddings(vectors, int((time.monotonic() - started) * 1000))
