"""A transactional outbox between the tracker store and RabbitMQ.

Rasa publishes events from an in-memory queue: an event committed to the tracker store
but not yet published (RabbitMQ down, a connection reset) is lost when the process
exits. Here AsyncSQLTrackerStore writes each new event's message into the `event_outbox`
table in the same transaction as its `events` rows (addons/tracker_store.py), and a
publisher task in each Rasa process moves the rows to RabbitMQ:

- it takes the oldest rows (ordered by id, so each conversation's events in the order
  they were stored), publishes them one by one with publisher confirms, and deletes
  the rows the broker confirmed, in one transaction;
- only one process publishes at a time: on PostgreSQL the one holding a transaction
  advisory lock (the rows are also taken `FOR UPDATE SKIP LOCKED`), on SQLite the one
  holding a file lock next to the database. One publisher keeps the global id order,
  and so every conversation's order, across replicas;
- RabbitMQ unreachable: the rows stay, and it retries with backoff (0.2 s doubling to
  5 s). A process killed meanwhile loses nothing: the rows are in the database, and
  another replica (or the same one, restarted) publishes them;
- each message carries `message_id` = the outbox row's id. A message whose confirm was
  lost with the connection is published again with the same id, so a consumer that
  drops repeated ids sees every event exactly once.

The message is what Rasa's PikaEventBroker sends (the JSON `{"sender_id": ..., **event}`,
persistent) to the same fanout exchange and durable queues.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, AsyncContextManager, Callable, Dict, List, Optional, Sequence, Text

import sqlalchemy as sa
from pamqp.commands import Basic
from rasa.core.brokers.broker import EventBroker

logger = logging.getLogger(__name__)

METADATA = sa.MetaData()
OUTBOX = sa.Table(
    "event_outbox",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("sender_id", sa.String(255), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),  # the message, as published
    sa.Column("created_at", sa.Float(), nullable=False),
)
INSERT = sa.insert(OUTBOX)
BATCH = 200
# Any fixed 64-bit key: the advisory lock that makes one replica the publisher.
ADVISORY_KEY = 0x6F7574626F78  # "outbox"
TRY_LOCK = sa.text(f"SELECT pg_try_advisory_xact_lock({ADVISORY_KEY})")  # held until commit or rollback
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.2, 5.0
IDLE_POLL_S = 0.25
PUBLISH_TIMEOUT_S = 10.0


def message_body(sender_id: Text, event: Dict[Text, Any]) -> str:
    """Rasa's message body: `TrackerStore._stream_new_events` + PikaEventBroker._message."""
    body = {"sender_id": sender_id}
    body.update(event)
    return json.dumps(body)


def rows(sender_id: Text, events: Sequence[Any], now: Optional[float] = None) -> List[Dict[str, Any]]:
    now = time.time() if now is None else now
    return [{"sender_id": sender_id, "body": message_body(sender_id, e.as_dict()), "created_at": now}
            for e in events]


class OutboxEventBroker(EventBroker):
    """Rasa's event broker slot, filled by the outbox publisher.

    AsyncSQLTrackerStore recognises it: it writes the outbox rows and calls `attach`,
    which starts the publisher task on its database. `publish` (called by Rasa's own
    code paths other than the tracker store, e.g. `rasa export`, or a blocking
    SQLTrackerStore) publishes directly, best effort, as PikaEventBroker would.
    """

    def __init__(self, url: str, queues: Sequence[str], exchange_name: str,
                 app_id: Optional[str] = None) -> None:
        super().__init__()
        self.url = url
        self.queues = list(queues)
        self.exchange_name = exchange_name
        self.app_id = app_id  # Rasa sets it to RASA_ENVIRONMENT, which this project does not use
        self.engine: Any = None
        self.postgres = False
        self._writing: Callable[[], AsyncContextManager] = contextlib.nullcontext
        self._lock_path: Optional[Path] = None
        self._lock_fd: Optional[int] = None
        self._connection: Any = None
        self._exchange: Any = None
        self._task: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._closed = False
        self._others: set = set()
        self.published = 0  # messages confirmed by this process

    # -- Rasa's EventBroker interface --------------------------------------------------------

    @classmethod
    async def from_endpoint_config(cls, broker_config: Any, event_loop: Any = None) -> Optional["OutboxEventBroker"]:
        raise NotImplementedError("built by addons.event_broker.EnvEventBroker")

    def publish(self, event: Dict[Text, Any], headers: Optional[Dict[Text, Text]] = None) -> None:
        task = asyncio.get_event_loop().create_task(self._publish_direct(event, headers))
        self._others.add(task)
        task.add_done_callback(self._others.discard)

    def is_ready(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._disconnect()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the tracker store's side ------------------------------------------------------------

    def attach(self, engine: Any, writing: Callable[[], AsyncContextManager] = contextlib.nullcontext) -> None:
        """Publish the outbox of this (async) engine's database, from now on."""
        self.engine = engine
        self.postgres = engine.url.get_backend_name() == "postgresql"
        self._writing = writing
        database = engine.url.database
        if not self.postgres and database and database != ":memory:":
            self._lock_path = Path(f"{database}.outbox.lock")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first `saved` on a running loop
        self._start()

    def saved(self) -> None:
        """New rows were committed: publish them now rather than at the next poll."""
        if self.engine is None:
            return
        self._start()
        if self._wake is not None:
            self._wake.set()

    def _start(self) -> None:
        if self._task is None and not self._closed:
            self._wake = asyncio.Event()
            self._task = asyncio.get_event_loop().create_task(self._run())

    # -- the publisher ---------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        failing_since: Optional[float] = None
        while not self._closed:
            try:
                sent = await self.publish_pending()
                if failing_since is not None:
                    logger.info("event outbox: publishing again after %.1f s", time.monotonic() - failing_since)
                failing_since, backoff = None, FIRST_BACKOFF_S
                if sent < BATCH:
                    assert self._wake is not None
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # RabbitMQ or the database away: the rows wait
                if failing_since is None:
                    failing_since = time.monotonic()
                logger.warning("event outbox: publishing failed (%s: %s); the events wait in the outbox, "
                               "retrying in %.1f s", type(error).__name__, str(error).splitlines()[0][:200]
                               if str(error) else "", backoff)
                await self._disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def publish_pending(self, limit: int = BATCH) -> int:
        """Publish up to `limit` of the oldest rows and delete those the broker confirmed.

        Returns how many were published; raises when the broker or the database failed
        (after deleting the rows confirmed before the failure)."""
        if not self._try_file_lock():
            return 0
        try:
            async with self.engine.connect() as connection:
                if self.postgres:
                    locked = (await connection.execute(TRY_LOCK)).scalar()
                    if not locked:  # another replica publishes
                        await connection.rollback()
                        return 0
                query = sa.select(OUTBOX.c.id, OUTBOX.c.body).order_by(OUTBOX.c.id).limit(limit)
                if self.postgres:
                    query = query.with_for_update(skip_locked=True)
                pending = (await connection.execute(query)).all()
                if not self.postgres:
                    await connection.commit()  # SQLite: end the read; the delete is its own write
                if not pending:
                    await connection.rollback()
                    return 0
                done: List[int] = []
                failure: Optional[BaseException] = None
                try:
                    exchange = await self._ready_exchange()
                    for row_id, body in pending:
                        await self._send(exchange, body, str(row_id))
                        done.append(row_id)
                except Exception as error:  # keep what was confirmed, then report
                    failure = error
                if done:
                    async with self._writing():
                        await connection.execute(sa.delete(OUTBOX).where(OUTBOX.c.id.in_(done)))
                        await connection.commit()
                    self.published += len(done)
                else:
                    await connection.rollback()
                if failure is not None:
                    raise failure
                return len(done)
        finally:
            self._file_unlock()

    # -- RabbitMQ ---------------------------------------------------------------------------

    async def _ready_exchange(self) -> Any:
        import aio_pika

        if self._exchange is not None and self._connection is not None and not self._connection.is_closed:
            return self._exchange
        await self._disconnect()
        self._connection = await asyncio.wait_for(aio_pika.connect(self.url), PUBLISH_TIMEOUT_S)
        channel = await self._connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(self.exchange_name, type=aio_pika.ExchangeType.FANOUT)
        for name in self.queues:  # as PikaEventBroker declares them
            queue = await channel.declare_queue(name, durable=True)
            await queue.bind(exchange, "")
        self._exchange = exchange
        return exchange

    async def _send(self, exchange: Any, body: str, message_id: Optional[str],
                    headers: Optional[Dict[str, Any]] = None) -> None:
        import aio_pika

        message = aio_pika.Message(body.encode("utf-8"), headers=headers, app_id=self.app_id,
                                   message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        confirmation = await exchange.publish(message, "", timeout=PUBLISH_TIMEOUT_S)
        if not isinstance(confirmation, Basic.Ack):  # a nack, or a channel without confirms
            raise RuntimeError(f"RabbitMQ did not confirm the message: {confirmation!r}")

    async def _disconnect(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)

    async def _publish_direct(self, event: Dict[Text, Any], headers: Optional[Dict[Text, Text]]) -> None:
        try:
            await self._send(await self._ready_exchange(), json.dumps(event), None, headers)
        except Exception as error:  # noqa: BLE001 - best effort, as PikaEventBroker without its queue
            logger.error("event broker: an event published outside the outbox was lost (%s: %s)",
                         type(error).__name__, error)

    # -- one publisher per SQLite database ----------------------------------------------------

    def _try_file_lock(self) -> bool:
        if self._lock_path is None:
            return True
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _file_unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
