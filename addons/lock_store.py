"""Rasa's lock store, chosen by one environment variable.

Rasa processes one message per conversation at a time by locking the conversation.
In one process an in-memory lock is enough (the default). Several Rasa processes or
Sanic workers (`SANIC_WORKERS` > 1) must share the locks: set
`LOCK_STORE_URL=redis://host:6379/1` and this returns Rasa's own RedisLockStore.
"""
from __future__ import annotations

import os
from typing import Any, Optional
from urllib.parse import urlparse

from rasa.core.lock_store import InMemoryLockStore, LockStore, RedisLockStore
from rasa.shared.exceptions import RasaException


class EnvLockStore(LockStore):
    """A factory in the shape Rasa loads custom lock stores with (a class)."""

    def __new__(cls, endpoint_config: Optional[Any] = None) -> LockStore:  # type: ignore[misc]
        url = os.environ.get("LOCK_STORE_URL", "")
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in ("redis", "rediss"):
                raise RasaException(f"LOCK_STORE_URL must be a redis:// URL, not '{url}'")
            return RedisLockStore(
                host=parsed.hostname or "localhost",
                port=parsed.port or 6379,
                db=int(parsed.path.strip("/") or 1),
                username=parsed.username,
                password=parsed.password,
                use_ssl=parsed.scheme == "rediss",
                key_prefix=os.environ.get("LOCK_STORE_KEY_PREFIX") or None,
            )
        if int(os.environ.get("SANIC_WORKERS", "1")) > 1:
            raise RasaException(
                "SANIC_WORKERS > 1 needs a lock store shared by the workers: "
                "set LOCK_STORE_URL=redis://host:6379/1"
            )
        return InMemoryLockStore()
