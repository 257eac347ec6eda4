"""Real models, real HTTP: the models load once per session and are shared by every
server the tests start (a real uvicorn on a free loopback port, in a thread), so each
server can have its own settings (small queue, short timeout, API key) for free.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from generator.app import create_app
from generator.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """float32 unless GENERATOR_DTYPE says otherwise: these tests compare batched, cached
    and single runs token for token, which float32 makes exact; bfloat16 (what "auto"
    picks on a CPU with AVX512_BF16) rounds differently with the batch's shape. The
    running services use "auto" (tests/ run them)."""
    settings = Settings.from_env()
    return settings if os.environ.get("GENERATOR_DTYPE") else settings.with_overrides(dtype="float32")


@pytest.fixture(scope="session")
def engines(settings):
    """Loads from the safetensors cache (converting the GGUF first if it is missing)."""
    from generator.chat import TransformersChatEngine
    from generator.embeddings import SentenceTransformerEngine

    chat = TransformersChatEngine.load(settings)
    yield chat, SentenceTransformerEngine.load(settings)
    chat.close()


@dataclass
class RunningServer:
    app: object
    url: str
    client: httpx.Client
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def service(self):
        return self.app.state.service

    def wait_until(self, predicate, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def stop(self) -> None:
        self.client.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_server(settings: Settings, engines) -> RunningServer:
    chat, embeddings = engines
    app = create_app(settings, chat_engine=chat, embedding_engine=embeddings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    return RunningServer(app, url, httpx.Client(base_url=url, timeout=60), server, thread)


@pytest.fixture(scope="session")
def server(settings, engines):
    running = start_server(settings, engines)
    yield running
    running.stop()


# Settings the chat engine (its scheduler) reads when it is built, not the app.
ENGINE_SETTINGS = {"max_batch", "max_queue", "prefill_tokens", "prefix_cache_entries", "threads"}


@pytest.fixture
def make_server(settings, engines):
    """Start a server with some settings changed; stopped when the test ends.

    Engine settings get a new chat engine around the same (already loaded) model.
    """
    from generator.chat import TransformersChatEngine

    started: list[RunningServer] = []
    built: list[TransformersChatEngine] = []

    def make(**overrides) -> RunningServer:
        changed = settings.with_overrides(**overrides)
        chat, embeddings = engines
        if ENGINE_SETTINGS & overrides.keys():
            chat = TransformersChatEngine(chat.model, chat.tokenizer, changed)
            built.append(chat)
        running = start_server(changed, (chat, embeddings))
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
    for chat in built:
        chat.close()


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert "code" in error
    if code is not None:
        assert error["code"] == code, error
    return error
