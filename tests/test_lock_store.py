"""The lock store follows LOCK_STORE_URL; several workers refuse an in-memory lock; with
Redis down, Rasa's HTTP API answers 503 with Retry-After, as the channels do."""
from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import urllib.error
import urllib.request
import uuid

import pytest
from rasa.core.lock_store import InMemoryLockStore, RedisLockStore
from rasa.shared.exceptions import RasaException

from addons.lock_store import EnvLockStore
from ops import stack
from tests.conftest import API_TOKEN, RedisServer

REDIS_URL = "redis://127.0.0.1:6379/3"


def _redis_available() -> bool:
    import redis

    try:
        return redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.exceptions.RedisError:
        return False


def test_in_memory_by_default(monkeypatch):
    monkeypatch.delenv("LOCK_STORE_URL", raising=False)
    monkeypatch.delenv("SANIC_WORKERS", raising=False)
    assert isinstance(EnvLockStore(), InMemoryLockStore)


def test_several_workers_need_a_shared_lock_store(monkeypatch):
    monkeypatch.delenv("LOCK_STORE_URL", raising=False)
    monkeypatch.setenv("SANIC_WORKERS", "2")
    with pytest.raises(RasaException, match="LOCK_STORE_URL"):
        EnvLockStore()


def test_a_non_redis_url_is_refused(monkeypatch):
    monkeypatch.setenv("LOCK_STORE_URL", "http://127.0.0.1:6379")
    with pytest.raises(RasaException, match="redis://"):
        EnvLockStore()


def test_redis_lock_serialises_one_conversation(monkeypatch):
    if not _redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    monkeypatch.setenv("LOCK_STORE_URL", REDIS_URL)
    monkeypatch.setenv("LOCK_STORE_KEY_PREFIX", "test")
    first, second = EnvLockStore(), EnvLockStore()  # two processes' views of one Redis
    assert isinstance(first, RedisLockStore)
    conversation = f"lock-{uuid.uuid4().hex}"
    order = []

    async def turn(store, name, hold):
        async with store.lock(conversation, lock_lifetime=10, wait_time_in_seconds=0.01):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    async def scenario():
        await asyncio.gather(turn(first, "a", 0.3), turn(second, "b", 0.0))

    asyncio.run(scenario())
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def _locked_increments(url: str, prefix: str, conversation: str, counter: str, turns: int) -> None:
    """One process's turns: a read-modify-write of a counter under the conversation lock."""
    import os

    import redis

    os.environ["LOCK_STORE_URL"] = url
    os.environ["LOCK_STORE_KEY_PREFIX"] = prefix
    store, red = EnvLockStore(), redis.Redis.from_url(url)

    async def turns_():
        for _ in range(turns):
            async with store.lock(conversation, lock_lifetime=10, wait_time_in_seconds=0.002):
                value = int(red.get(counter) or 0)
                await asyncio.sleep(0.001)  # the "turn": others must not read meanwhile
                red.set(counter, value + 1)

    asyncio.run(turns_())


def test_two_processes_never_hold_one_conversation_lock_at_once():
    """Rasa's RedisLockStore loses tickets when two processes take them at the same
    moment (both then run the conversation); the atomic one must not."""
    import multiprocessing

    import redis

    if not _redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    conversation, counter = f"lock-{uuid.uuid4().hex}", f"test-counter-{uuid.uuid4().hex}"
    turns = 60
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_locked_increments, args=(REDIS_URL, "test", conversation, counter, turns))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    red = redis.Redis.from_url(REDIS_URL)
    try:
        assert [w.exitcode for w in workers] == [0, 0]
        assert int(red.get(counter)) == 2 * turns  # no lost update: never two holders
        assert red.get(f"test:lock:{conversation}") is None  # the last turn removed the lock
    finally:
        red.delete(counter)


def test_ticket_numbers_are_unique_across_processes():
    import multiprocessing

    if not _redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    conversation = f"lock-{uuid.uuid4().hex}"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def issue(n):
        import os

        os.environ["LOCK_STORE_URL"] = REDIS_URL
        os.environ["LOCK_STORE_KEY_PREFIX"] = "test"
        store = EnvLockStore()
        queue.put([store.issue_ticket(conversation, 30) for _ in range(n)])

    workers = [context.Process(target=issue, args=(200,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    tickets = queue.get(timeout=60) + queue.get(timeout=60)
    for worker in workers:
        worker.join(10)
    import redis

    redis.Redis.from_url(REDIS_URL).delete(f"test:lock:{conversation}")
    assert sorted(tickets) == list(range(400))


def test_a_lock_left_by_a_dead_process_expires_with_its_ticket(monkeypatch):
    import redis

    if not _redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    monkeypatch.setenv("LOCK_STORE_URL", REDIS_URL)
    monkeypatch.setenv("LOCK_STORE_KEY_PREFIX", "test")
    conversation = f"lock-{uuid.uuid4().hex}"
    EnvLockStore().issue_ticket(conversation, 5)  # and never cleaned up: the process died
    ttl = redis.Redis.from_url(REDIS_URL).ttl(f"test:lock:{conversation}")
    assert 0 < ttl <= 6


def _api(method: str, url: str, body=None) -> tuple:
    """One Rasa HTTP API call: (status, headers, JSON body)."""
    request = urllib.request.Request(f"{url}?token={API_TOKEN}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def test_the_http_api_answers_503_while_redis_is_down_and_changes_nothing(tmp_path, trained_model):
    """Rasa's HTTP API routes that lock a conversation answer as the REST channel does
    while the lock store's Redis is down (503, Retry-After, a JSON error; Rasa's own
    answer is a 500), and the refused requests changed nothing once Redis is back."""
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server to stop and start")
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    port, tracker_db = stack.free_port(), tmp_path / "tracker.db"
    rasa = stack.rasa_service(
        port, tmp_path, trained_model, stack.endpoints_for(stack.free_port(), tmp_path),
        env={"TRACKER_STORE_URL": f"sqlite:///{tracker_db}", "LOCK_STORE_URL": redis_server.url,
             "TICKET_LOCK_LIFETIME": "2"},  # a restarted Redis holds turns back this long (+1 s)
        extra_args=["--enable-api", "--auth-token", API_TOKEN],
    )
    sender = f"api-{uuid.uuid4().hex[:8]}"
    events_url = f"http://127.0.0.1:{port}/conversations/{sender}/tracker/events"
    hello = {"event": "user", "text": "hello", "parse_data": {"intent": {"name": "greet", "confidence": 1.0}}}

    def stored() -> list:
        with sqlite3.connect(tracker_db) as db:
            return db.execute("SELECT type_name, data FROM events WHERE sender_id = ? ORDER BY id", (sender,)).fetchall()

    try:
        with stack.running([rasa]):
            redis_server.wait_settled(2)
            status, _, _ = _api("POST", events_url, hello)
            assert status == 200
            before = stored()
            assert before
            redis_server.kill()
            for url, request in ((events_url, {"event": "user", "text": "my card has not arrived"}),
                                 (f"http://127.0.0.1:{port}/webhooks/rest/webhook",  # the REST channel: the same
                                  {"sender": sender, "message": "my card has not arrived"})):
                status, headers, body = _api("POST", url, request)
                assert status == 503, body
                seconds = int(headers["Retry-After"])
                assert seconds >= 1 and body["retry_after"] == seconds and "send it again" in body["error"], body
            redis_server.start()
            assert stored() == before  # nothing of the refused requests was processed
            redis_server.wait_settled(2)
            status, _, body = _api("POST", events_url, hello)
            assert status == 200, body  # served again, without a restart
            assert len(stored()) > len(before)
            # Rasa's other API errors are answered as before
            status, _, body = _api("POST", events_url, {"event": "no-such-event"})
            assert status == 400 and body["reason"] == "BadRequest", body
    finally:
        redis_server.kill()
