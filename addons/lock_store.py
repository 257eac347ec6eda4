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
60), counted from when the ticket's turn starts (Rasa counts from when it was issued,
so waiting behind another turn used up a turn's time: `_renew`): a replica killed in
the middle of a turn blocks that conversation until then. The
Redis key expires with its last ticket, so a dead replica leaves no key behind.

When Redis goes away (Rasa's RedisLockStore raises on the first connection error, and
Rasa's REST channel then answers 200 with no reply):
- Getting a ticket, and reading the lock while waiting for it, are retried with backoff
  (0.1 s doubling to 1 s) for up to RETRY_S seconds (10), without blocking the other
  conversations; a turn that still cannot lock its conversation fails with
  LockStoreUnavailable, which the REST channel and Rasa's HTTP API answer with 503 and
  Retry-After, socket.io with an error message (addons/channels.py). Nothing of that
  turn was processed, so sending it again is safe.
- Releasing the lock after the turn never fails the turn (it was processed and stored):
  the key expires by itself with its tickets.
- A Redis that restarted has forgotten the locks of the turns in flight (without
  persistence it comes back empty; with RDB it comes back with an old snapshot), so a
  second message of such a conversation would be processed next to the first. While
  Redis has been up for less than a lock's lifetime (INFO's uptime_in_seconds, read at
  every turn), turns wait until it has, exactly as they would wait for a forgotten
  ticket to expire; a wait longer than RETRY_S is answered at once with 503 and
  Retry-After. A fresh Redis (a new deployment) makes the first turns wait the same way.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Callable, Optional, Text, Tuple, TypeVar
from urllib.parse import urlparse

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, InMemoryLockStore, LockError, LockStore, RedisLockStore
from rasa.shared.exceptions import RasaException

from addons import prepare_rasa
from assistant import config

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a turn waits for an unreachable or just restarted Redis before it fails (503).
RETRY_S = 10.0
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.1, 1.0
CONNECT_TIMEOUT_S = 2.0  # a new connection to Redis (the calls block the event loop)


class LockStoreUnavailable(LockError):
    """The conversation could not be locked: Redis unreachable, or just restarted.
    Nothing of the turn was processed; `retry_after` says when to send it again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


def _unreachable(error: Exception) -> bool:
    """A connection refused, lost or timed out, or a Redis loading its data."""
    import redis

    return isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


class AtomicRedisLockStore(RedisLockStore):
    """RedisLockStore whose ticket changes are atomic across processes, and which waits
    out a Redis outage or restart for a bounded time (see the module doc)."""

    def __init__(self, *args: Any, retry_s: float = RETRY_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_s = retry_s
        if self.red.connection_pool.connection_kwargs.get("socket_connect_timeout") is None:
            self.red.connection_pool.connection_kwargs["socket_connect_timeout"] = CONNECT_TIMEOUT_S
        self._warned_at = 0.0

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: Text,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncGenerator[TicketLock, None]:
        """Rasa's lock, retrying an unreachable Redis until `retry_s` after the turn
        began, after waiting out a Redis restart (LockStoreUnavailable after that)."""
        deadline = time.monotonic() + self.retry_s
        young = await self._retrying("check", lambda: self._forgets_for(lock_lifetime), deadline)
        if young > 0:
            self._warn(f"Redis has been up for less than a lock's lifetime ({lock_lifetime:.0f} s) and may "
                       f"have forgotten the locks of turns in flight: new turns wait {young:.0f} s")
            if time.monotonic() + young > deadline:
                raise LockStoreUnavailable(
                    f"Redis restarted: no turn of conversation '{conversation_id}' before {young:.0f} s", young)
            await asyncio.sleep(young)
        ticket = await self._retrying(
            "ticket", lambda: self._change(conversation_id, _issue(conversation_id, lock_lifetime)), deadline)
        try:
            yield await self._wait_for_turn(conversation_id, ticket, lock_lifetime, wait_time_in_seconds, deadline)
        finally:
            try:
                self.cleanup(conversation_id, ticket)
            except Exception as error:  # noqa: BLE001 - the turn is done; the key expires by itself
                if not _unreachable(error):
                    raise
                logger.warning("lock store: could not release the lock of '%s' (%s: %s); it expires in at most "
                               "%.0f s", conversation_id, type(error).__name__, error, lock_lifetime)

    async def _wait_for_turn(
        self, conversation_id: Text, ticket: int, lock_lifetime: float, wait_time_in_seconds: float,
        deadline: float,
    ) -> TicketLock:
        """Rasa's _acquire_lock, with each Redis call retried (until the deadline while
        Redis is unreachable; the wait for other turns is not limited, as in Rasa), and
        the ticket's lifetime counted from when its turn starts (see `_renew`)."""
        renew = _renew(ticket, lock_lifetime)
        while True:
            lock = await self._retrying("read", lambda: self.get_lock(conversation_id),
                                        max(deadline, time.monotonic() + self.retry_s))
            if not lock:  # expired, or forgotten by a Redis that restarted
                raise LockStoreUnavailable(
                    f"The lock of conversation '{conversation_id}' disappeared while waiting for it", 1)
            if not lock.is_locked(ticket):
                await self._retrying("renew", lambda: self._change(conversation_id, renew),
                                     max(deadline, time.monotonic() + self.retry_s))
                return lock
            await asyncio.sleep(wait_time_in_seconds)
            await self._retrying("update", lambda: self._change(conversation_id, renew),
                                 max(deadline, time.monotonic() + self.retry_s))

    async def _retrying(self, what: str, call: Callable[[], T], deadline: float) -> T:
        backoff, attempt = FIRST_BACKOFF_S, 1
        while True:
            try:
                return call()
            except Exception as error:
                if not _unreachable(error):
                    raise LockError(f"Error while acquiring lock. Error:\n{error}") from error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockStoreUnavailable(
                        f"lock store {what} failed ({attempt} attempts), giving up: {error}", 5) from error
                logger.warning("lock store %s failed (attempt %d: %s: %s); retrying in %.1f s",
                               what, attempt, type(error).__name__, error, min(backoff, left))
                await asyncio.sleep(min(backoff, left))
                backoff, attempt = min(backoff * 2, MAX_BACKOFF_S), attempt + 1

    def _forgets_for(self, lock_lifetime: float) -> float:
        """Seconds until Redis has been up for a lock's lifetime (0 when it has): the
        tickets it may have forgotten were issued before it started, so they have
        expired by then (uptime_in_seconds is a difference of whole seconds, up to 1 s
        more than the true uptime: one second more of wait)."""
        uptime = float(self.red.info("server").get("uptime_in_seconds", 0))
        return max(0.0, lock_lifetime + 1 - uptime)

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._warned_at > 5:
            self._warned_at = time.monotonic()
            logger.warning(message)

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
        try:
            return self._change(conversation_id, _issue(conversation_id, lock_lifetime))
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


def _issue(conversation_id: Text, lock_lifetime: float) -> Callable[[Optional[TicketLock]], Tuple[int, TicketLock]]:
    def change(lock: Optional[TicketLock]) -> Tuple[int, TicketLock]:
        lock = lock or TicketLock(conversation_id)
        return lock.issue_ticket(lock_lifetime), lock

    return change


def _renew(
    ticket_number: int, lock_lifetime: float
) -> Callable[[Optional[TicketLock]], Tuple[None, Optional[TicketLock]]]:
    """Drop expired tickets and give `ticket_number` a full lifetime from now.

    Rasa counts a ticket's lifetime from when it was issued, waiting included: a turn
    that waited behind a slow one (an LLM reply: up to GENERATOR_TIMEOUT_S) lost its
    ticket in the middle of its own slow turn, and the next message of the conversation
    was processed next to it (one of the two turns then not stored; measured with two
    messages at once per conversation, TICKET_LOCK_LIFETIME=25, GENERATOR_TIMEOUT_S=15).
    Renewed while it waits (every poll) and when its turn starts, a ticket expires only
    when its holder stops: a turn then has the whole lifetime to itself.
    """

    def change(lock: Optional[TicketLock]) -> Tuple[None, Optional[TicketLock]]:
        if lock is None:
            return None, None
        lock.remove_expired_tickets()
        for ticket in lock.tickets:
            if ticket.number == ticket_number:
                ticket.expires = time.time() + lock_lifetime
        return None, lock if lock.tickets else None

    return change


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
