"""The lock store follows LOCK_STORE_URL; several workers refuse an in-memory lock."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from rasa.core.lock_store import InMemoryLockStore, RedisLockStore
from rasa.shared.exceptions import RasaException

from addons.lock_store import EnvLockStore

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
