"""Chat and embeddings from separate servers (EMBEDDINGS_URL), and the action server's
start check that both models are served.

The chat server here is a fake: a small aiohttp app that serves only /v1/models and
/v1/chat/completions, as a vLLM chat server does (vLLM itself needs a GPU and cannot
run on this machine). The embeddings come from the real local generator, and the turn
goes through the real Rasa and action server.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from aiohttp import web

from ops import settings, stack
from tests.conftest import Stack, metadata

CHAT_MODEL = "fake-chat-model"
QUESTION = "how long does it take for a new card to arrive?"


class ChatOnlyServer:
    """An OpenAI-compatible chat server without embeddings, in a thread of its own."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: List[Tuple[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(("models", None))
        return web.json_response({"object": "list", "data": [{"id": CHAT_MODEL, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("chat", body))
        text = "A new card usually arrives within 3-5 working days."
        return web.json_response({
            "model": body.get("model"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        for i in range(body.get("n", 1))],
            "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22},
        })

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "ChatOnlyServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def generator_url(tmp_path_factory):
    """The real CPU generator (chat and embeddings); here only its embeddings are used."""
    port = stack.free_port()
    service = stack.generator_service(port, tmp_path_factory.mktemp("generator"))
    service.start()
    try:
        stack.wait_healthy([service], settings.STARTUP_TIMEOUT_S)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        service.stop()


@pytest.fixture(scope="module")
def chat_server():
    server = ChatOnlyServer().start()
    yield server
    server.stop()


def _start_actions(work: Path, env: Dict[str, str], name: str = "actions") -> stack.Service:
    service = stack.actions_service(stack.free_port(), work, env=env, name=name)
    service.start()
    return service


def _wait_exit(service: stack.Service, timeout: float) -> int:
    assert service.process is not None
    return service.process.wait(timeout)


def test_chat_at_a_chat_only_server_and_embeddings_at_the_generator_answer_a_turn(
    tmp_path, trained_model, generator_url, chat_server
):
    from assistant import bank

    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    bank.seed(bank_url)
    act_port, rasa_port = stack.free_port(), stack.free_port()
    actions = stack.actions_service(act_port, tmp_path, env={
        "GENERATOR_URL": chat_server.url, "GENERATOR_MODEL": CHAT_MODEL, "EMBEDDINGS_URL": generator_url,
        "BANK_DB_URL": bank_url,
        # One generated candidate, so the turn asks the chat server as well as the embeddings.
        "LLM_CANDIDATES": "1",
    })
    rasa = stack.rasa_service(rasa_port, tmp_path, trained_model, stack.endpoints_for(act_port, tmp_path),
                              env={"TRACKER_STORE_URL": f"sqlite:///{tmp_path / 'tracker.db'}"})
    services = [actions, rasa]
    generator = stack.Service("generator", [], f"{generator_url[:-3]}/health", tmp_path / "none.log")
    running = Stack(generator, actions, rasa, f"http://127.0.0.1:{rasa_port}", tmp_path / "tracker.db", bank_url)
    try:
        for service in services:
            service.start()
        stack.wait_healthy(services, settings.STARTUP_TIMEOUT_S)
        log = actions.log_path.read_text()
        assert f"models: chat {CHAT_MODEL} at {chat_server.url}, embeddings all-MiniLM-L6-v2 at {generator_url}" in log

        status, reply = running.say("endpoints-turn", QUESTION)
        assert status == 200, reply
        bot = metadata(running.last_bot_event("endpoints-turn"))
        assert bot["source"] in ("knowledge", "llm"), bot  # answered, not the fallback
        assert bot["sources"] == ["card-delivery"]
        assert "working days" in reply[0]["text"]
        chats = [body for kind, body in chat_server.requests if kind == "chat"]
        assert chats and all(body["model"] == CHAT_MODEL for body in chats)
        # Nothing but chat and the model list went to the chat server (it has no embeddings).
        assert {kind for kind, _ in chat_server.requests} == {"models", "chat"}
    finally:
        stack.stop_all(services)
    # The client's one session was closed on shutdown (aiohttp warns about one left open).
    assert "Unclosed client session" not in actions.log_path.read_text()
    assert "Unclosed connector" not in actions.log_path.read_text()


def test_a_missing_embeddings_model_stops_the_start_with_one_clear_line(tmp_path, chat_server):
    # EMBEDDINGS_URL left unset: embeddings go to GENERATOR_URL, the chat-only server.
    started = time.monotonic()
    actions = _start_actions(tmp_path, {"GENERATOR_URL": chat_server.url, "GENERATOR_MODEL": CHAT_MODEL})
    try:
        assert _wait_exit(actions, 60) == 2
    finally:
        actions.stop()
    assert time.monotonic() - started < 60  # a server that answers without the model is not waited for
    lines = [line for line in actions.log_path.read_text().splitlines() if "cannot start" in line]
    assert lines == [
        f"action server: cannot start: the embeddings model 'all-MiniLM-L6-v2' is not served at "
        f"{chat_server.url} (it serves: {CHAT_MODEL}; set EMBEDDINGS_URL / EMBEDDINGS_MODEL)"
    ]


def test_a_missing_chat_model_at_the_ready_generator_stops_the_start(tmp_path, generator_url):
    """The generator answers /health (ready): a model it does not list will not come."""
    started = time.monotonic()
    actions = _start_actions(tmp_path, {"GENERATOR_URL": generator_url, "GENERATOR_MODEL": "no-such-chat-model"})
    try:
        assert _wait_exit(actions, 60) == 2
    finally:
        actions.stop()
    assert time.monotonic() - started < 60
    assert (f"action server: cannot start: the chat model 'no-such-chat-model' is not served at {generator_url} "
            "(it serves: SmolLM2-135M-Instruct, all-MiniLM-L6-v2; set GENERATOR_URL / GENERATOR_MODEL)"
            ) in actions.log_path.read_text()


def test_a_chat_server_that_is_still_starting_is_waited_for(tmp_path, generator_url):
    late = ChatOnlyServer(port=stack.free_port())
    actions = _start_actions(tmp_path, {
        "GENERATOR_URL": late.url, "GENERATOR_MODEL": CHAT_MODEL, "EMBEDDINGS_URL": generator_url,
        "GENERATOR_START_WAIT_S": "60",
    })
    try:
        time.sleep(4)
        assert actions.running() and not actions.healthy()
        late.start()
        stack.wait_healthy([actions], 60)
        assert "waiting up to 60 s for the models" in actions.log_path.read_text()
    finally:
        actions.stop()
        if late._runner is not None:
            late.stop()


def test_a_chat_server_that_never_comes_gives_up_after_the_wait(tmp_path, generator_url):
    started = time.monotonic()
    actions = _start_actions(tmp_path, {
        "GENERATOR_URL": "http://127.0.0.1:9/v1", "EMBEDDINGS_URL": generator_url, "GENERATOR_START_WAIT_S": "5",
    })
    try:
        assert _wait_exit(actions, 60) == 2
    finally:
        actions.stop()
    assert time.monotonic() - started >= 5
    assert "cannot start: http://127.0.0.1:9/v1 is not answering" in actions.log_path.read_text()


def test_embedding_model_the_old_name_still_counts():
    code = "from assistant import settings; print(settings.EMBEDDINGS_MODEL, settings.EMBEDDING_MODEL)"

    def read(**env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k not in ("EMBEDDING_MODEL", "EMBEDDINGS_MODEL")}
        return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=settings.ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert read() == "all-MiniLM-L6-v2 all-MiniLM-L6-v2"
    assert read(EMBEDDING_MODEL="old-name") == "old-name old-name"
    assert read(EMBEDDING_MODEL="old-name", EMBEDDINGS_MODEL="new-name") == "new-name new-name"


def test_the_client_sends_chat_and_embeddings_to_their_servers_over_one_session(monkeypatch):
    from assistant import settings as action_settings
    from assistant import generator_client as generator

    seen: List[Tuple[str, str]] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(("chat", request.host))
        return web.json_response({"model": "m", "choices": [{"message": {"content": "hi"}}]})

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(("embeddings", request.host))
        return web.json_response({"data": [{"index": i, "embedding": [1.0, 0.0]} for i in range(len(body["input"]))]})

    async def serve(path: str, handler) -> Tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def scenario() -> None:
        chat_runner, chat_host = await serve("/v1/chat/completions", chat)
        emb_runner, emb_host = await serve("/v1/embeddings", embeddings)
        monkeypatch.setattr(action_settings, "GENERATOR_URL", f"http://{chat_host}/v1")
        monkeypatch.setattr(action_settings, "EMBEDDINGS_URL", f"http://{emb_host}/v1")
        try:
            await generator.chat([{"role": "user", "content": "hi"}])
            session = generator._client_session()
            await generator.embed(["a", "b"])
            await generator.chat([{"role": "user", "content": "again"}])
            assert generator._client_session() is session  # one session for every call
            await generator.close()
            assert session.closed
        finally:
            await chat_runner.cleanup()
            await emb_runner.cleanup()
        assert seen == [("chat", chat_host), ("embeddings", emb_host), ("chat", chat_host)]

    asyncio.run(scenario())
    # Unset, EMBEDDINGS_URL follows GENERATOR_URL (also when a test changes GENERATOR_URL).
    monkeypatch.setattr(action_settings, "EMBEDDINGS_URL", "")
    monkeypatch.setattr(action_settings, "GENERATOR_URL", "http://elsewhere:1/v1")
    assert generator.embeddings_url() == "http://elsewhere:1/v1"


def test_the_stack_starts_the_cpu_generator_for_embeddings_beside_vllm(monkeypatch):
    for name in ("GENERATOR_URL", "EMBEDDINGS_URL"):
        monkeypatch.delenv(name, raising=False)
    local = f"http://127.0.0.1:{settings.GENERATOR_PORT}"
    assert stack.llm_endpoints(7000) == (True, {"GENERATOR_URL": "http://127.0.0.1:7000/v1"})
    vllm = {"GENERATOR_URL": "http://vllm:8000/v1"}
    assert stack.llm_endpoints(7000, vllm) == (False, vllm)
    # deploy/scale-out.env's pair: chat on vLLM, embeddings on this machine's CPU generator
    assert stack.llm_endpoints(7000, {**vllm, "EMBEDDINGS_URL": f"{local}/v1"}) == (
        True, {**vllm, "EMBEDDINGS_URL": "http://127.0.0.1:7000/v1"})
    tei = {"EMBEDDINGS_URL": "http://tei:80/v1"}
    assert stack.llm_endpoints(7000, {**vllm, **tei}) == (False, {**vllm, **tei})
    monkeypatch.setenv("GENERATOR_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("EMBEDDINGS_URL", f"http://localhost:{settings.GENERATOR_PORT}/v1")
    assert stack.llm_endpoints(7000) == (True, {**vllm, "EMBEDDINGS_URL": "http://127.0.0.1:7000/v1"})
