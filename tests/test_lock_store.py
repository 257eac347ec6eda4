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
