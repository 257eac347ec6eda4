"""Rasa's lock store, chosen by one environment variable.

Rasa processes one message per conversation at a time by locking the conversation.
In one process an in-memory lock is enough (the default). Several Rasa processes or
Sanic workers (`SANIC_WORKERS` > 1) must share the locks: set
`LOCK_STORE_URL=redis://host:6379/1` and this returns AtomicRedisLockStore, Rasa's
RedisLockStore with each change of a lock made atomic.

Why: Rasa's RedisLockStore changes a lock with a GET, then a SET of the whole ticket
list. Two processes issuing tickets for one conversation at the same moment both read
the same list and the second SET drops the first one's ticket, so both hold "the" lock
and process the conversation at the same time (measured: 2 processes issuing 300
tickets each for one conversation got 420 distinct numbers out of 600). Here every
read-modify-write of a lock runs in a Redis transaction (WATCH/MULTI/EXEC, retried
when another process changed the lock in between), so ticket numbers are unique and a
conversation is processed by one replica at a time.

A lock's tickets expire after `TICKET_LOCK_LIFETIME` seconds (Rasa's variable, default
60): a replica killed in the middle of a turn blocks that conversation until then. The
Redis key expires with its last ticket, so a dead replica leaves no key behind.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Optional, Text, Tuple, TypeVar
from urllib.parse import urlparse

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, InMemoryLockStore, LockError, LockStore, RedisLockStore
from rasa.shared.exceptions import RasaException

from addons import prepare_rasa
from assistant import config

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)

T = TypeVar("T")


class AtomicRedisLockStore(RedisLockStore):
    """RedisLockStore whose ticket changes are atomic across processes."""

    def _change(
        self,
        conversation_id: Text,
        change: Callable[[Optional[TicketLock]], Tuple[T, Optional[TicketLock]]],
    ) -> T:
        """Apply `change` to the stored lock atomically.

        `change` gets the current lock (or None) and returns (result, lock to store);
        a None lock deletes the key. Retried from a fresh read if the key changed.
        """
        key = self.key_prefix + conversation_id
        outcome: list = []

        def transaction(pipe: Any) -> None:
            outcome.clear()
            raw = pipe.get(key)  # immediate: the pipeline is watching `key`
            lock = TicketLock.from_dict(json.loads(raw)) if raw else None
            result, new_lock = change(lock)
            pipe.multi()
            if new_lock is None:
                pipe.delete(key)
            else:
                # Gone from Redis when its last ticket expires, also when the process
                # holding it was killed (Rasa's own keys never expire).
                last = max((ticket.expires for ticket in new_lock.tickets), default=time.time())
                pipe.set(key, new_lock.dumps(), ex=max(1, math.ceil(last - time.time()) + 1))
            outcome.append(result)

        self.red.transaction(transaction, key)
        return outcome[0]

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def change(lock: Optional[TicketLock]) -> Tuple[int, TicketLock]:
            lock = lock or TicketLock(conversation_id)
            return lock.issue_ticket(lock_lifetime), lock

        try:
            return self._change(conversation_id, change)
        except Exception as error:  # as Rasa's: any failure to get a ticket is a LockError
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def update_lock(self, conversation_id: Text) -> None:
        def change(lock: Optional[TicketLock]) -> Tuple[None, Optional[TicketLock]]:
            if lock is not None:
                lock.remove_expired_tickets()
            return None, lock

        self._change(conversation_id, change)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        self.cleanup(conversation_id, ticket_number)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Drop the ticket; delete the lock when nobody else holds a ticket (one step)."""

        def change(lock: Optional[TicketLock]) -> Tuple[None, Optional[TicketLock]]:
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            return None, lock if lock.is_someone_waiting() else None

        self._change(conversation_id, change)


class EnvLockStore(LockStore):
    """A factory in the shape Rasa loads custom lock stores with (a class)."""

    def __new__(cls, endpoint_config: Optional[Any] = None) -> LockStore:  # type: ignore[misc]
        settings = config.lock_store()
        url = settings.url
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in ("redis", "rediss"):
                raise RasaException(f"LOCK_STORE_URL must be a redis:// URL, not '{url}'")
            return AtomicRedisLockStore(
                host=parsed.hostname or "localhost",
                port=parsed.port or 6379,
                db=int(parsed.path.strip("/") or 1),
                username=parsed.username,
                password=parsed.password,
                use_ssl=parsed.scheme == "rediss",
                key_prefix=settings.key_prefix or None,
            )
        if settings.sanic_workers > 1:
            raise RasaException(
                "SANIC_WORKERS > 1 needs a lock store shared by the workers: "
                "set LOCK_STORE_URL=redis://host:6379/1"
            )
        return InMemoryLockStore()
