"""Rasa's SQL tracker store, configured by one environment variable, sync or async.

`TRACKER_STORE_URL` is an SQLAlchemy URL: `sqlite:///rasa.db` (the default, a file in
the working directory) or `postgresql://user:password@host:5432/db` at scale. It wins
over a `url:` in endpoints.yml, so the same files serve a laptop and a cluster.

Both stores keep Rasa's own `events` table layout (the table is Rasa's
SQLTrackerStore.SQLEvent), so existing data, analytics and retention work with either:
- EnvSQLTrackerStore is Rasa's SQLTrackerStore: its queries block the event loop.
- AsyncSQLTrackerStore runs the same queries with SQLAlchemy's asyncio support
  (aiosqlite, asyncpg), so one slow query never stalls the other conversations.

AsyncSQLTrackerStore and a database that goes away (a restart, a failover):
- a connection lost or refused, a server starting up or shutting down, a locked SQLite
  file: the read or the save is retried with backoff (0.1 s doubling to 2 s) for up
  to `TRACKER_STORE_RETRY_S` seconds (default 20). A save is safe to repeat: it
  appends only the events the database does not have yet, in one transaction, under
  the conversation's lock, so a commit whose answer was lost is not written twice.
- still failing after that, or any other database error: TrackerStoreError. Rasa
  wraps every tracker store in FailSafeTrackerStore, which on *any* error goes on with
  an empty in-memory tracker (the conversation's history silently lost for that turn,
  and the turn never stored). This module makes FailSafeTrackerStore let
  TrackerStoreError through instead, so the turn fails rather than being answered
  from a forgotten conversation. (Rasa's REST channel answers a failed turn with the
  replies it collected so far: none when the read failed; those of the turn when the
  final save failed, although the turn was not stored.)
- with the project's event broker (EVENT_BROKER_URL) each new event's message is written
  to the `event_outbox` table in the same transaction as the event, and published
  from there (addons/outbox.py): consumers never see an event the database does not
  have, and a committed event reaches RabbitMQ even if RabbitMQ is down or this
  process dies before publishing it. Any other broker is given the events after they
  are committed (Rasa publishes before saving).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from typing import Any, AsyncContextManager, Awaitable, Callable, Dict, Iterable, Optional, Text, TypeVar

import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import (
    FailSafeTrackerStore,
    SerializedTrackerAsText,
    SQLTrackerStore,
    TrackerStore,
)
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from addons import outbox, prepare_rasa
from assistant import config
from assistant.conversations import DEFAULT_TRACKER_STORE_URL, tracker_store_url

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)

logger = logging.getLogger(__name__)

DEFAULT_URL = DEFAULT_TRACKER_STORE_URL
EVENTS = SQLTrackerStore.SQLEvent.__table__
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.1, 2.0

T = TypeVar("T")

# The statements, built once (building SQLAlchemy expressions costs more per turn than
# running them on SQLite); the conversation is the `sender_id` parameter.
_SENDER = sa.bindparam("sender_id")
_SESSION_START = (
    sa.select(sa.func.max(EVENTS.c.timestamp))
    .where(EVENTS.c.sender_id == _SENDER, EVENTS.c.type_name == SessionStarted.type_name)
    .scalar_subquery()
)
# A conversation's events in insertion order, like Rasa's `_event_query`: all of them,
# or those of the latest session.
ALL_EVENTS = sa.select(EVENTS.c.data).where(EVENTS.c.sender_id == _SENDER).order_by(EVENTS.c.id)
SESSION_EVENTS = (
    sa.select(EVENTS.c.data)
    .where(EVENTS.c.sender_id == _SENDER)
    .where(sa.or_(EVENTS.c.timestamp >= _SESSION_START, _SESSION_START.is_(None)))
    .order_by(EVENTS.c.id)
)
SESSION_EVENT_COUNT = sa.select(sa.func.count()).select_from(SESSION_EVENTS.subquery())
INSERT_EVENTS = sa.insert(EVENTS)


class TrackerStoreError(RasaException):
    """The tracker store could not read or save a conversation; the turn must fail."""


def _retry_seconds() -> float:
    return config.tracker_store().retry_s


def transient(error: BaseException) -> bool:
    """Whether the error means "the database is unreachable for now", worth a retry."""
    if isinstance(error, sa.exc.DBAPIError):
        return bool(error.connection_invalidated) or isinstance(
            error, (sa.exc.OperationalError, sa.exc.InterfaceError)
        )
    if isinstance(error, (OSError, asyncio.TimeoutError, sa.exc.TimeoutError)):
        return True  # refused, reset, timed out; a full connection pool
    try:
        import asyncpg.exceptions as pg
    except ImportError:  # no PostgreSQL driver installed: not a PostgreSQL error
        return False
    # asyncpg raises these itself, unwrapped: while connecting (server starting up or
    # shutting down, too many connections), and on a connection that broke under a
    # query or its rollback (connection lost, "another operation is in progress").
    if isinstance(error, pg.ClientConfigurationError):
        return False
    return isinstance(
        error,
        (pg.PostgresConnectionError, pg.OperatorInterventionError, pg.InsufficientResourcesError,
         pg.InterfaceError, pg.InternalClientError),
    )


def _let_our_errors_through() -> None:
    """Make Rasa's FailSafeTrackerStore re-raise TrackerStoreError (see the module doc).

    Its two error hooks run inside its `except Exception` blocks, so raising there
    propagates; every other error keeps Rasa's behaviour.
    """
    if getattr(FailSafeTrackerStore, "_raises_tracker_store_error", False):
        return

    def reraising(hook: Callable[[FailSafeTrackerStore, Exception], None]) -> Callable:
        def on_error(self: FailSafeTrackerStore, error: Exception) -> None:
            if isinstance(error, TrackerStoreError):
                raise error
            hook(self, error)

        return on_error

    FailSafeTrackerStore.on_tracker_store_error = reraising(FailSafeTrackerStore.on_tracker_store_error)
    FailSafeTrackerStore.on_tracker_store_retrieve_error = reraising(
        FailSafeTrackerStore.on_tracker_store_retrieve_error
    )
    FailSafeTrackerStore._raises_tracker_store_error = True


_let_our_errors_through()


class EnvSQLTrackerStore(SQLTrackerStore):
    def __init__(self, host: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(host=tracker_store_url(host), **kwargs)


def async_url(url: str) -> sa.engine.URL:
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise RasaException(
            f"AsyncSQLTrackerStore supports {', '.join(ASYNC_DRIVERS)}, not '{backend}'; "
            "use addons.tracker_store.EnvSQLTrackerStore for other databases"
        )
    return parsed.set(drivername=ASYNC_DRIVERS[backend])


def _engine_kwargs(url: sa.engine.URL) -> Dict[str, Any]:
    if url.get_backend_name() != "postgresql":
        # SQLAlchemy 1.4 opens a new aiosqlite connection (a thread, the pragmas) per
        # session on a SQLite file unless told to pool them; pooling halves a turn's
        # time in the store.
        return {"poolclass": sa.pool.AsyncAdaptedQueuePool}
    store = config.tracker_store()
    kwargs: Dict[str, Any] = {
        "pool_size": store.pool_size,
        "max_overflow": store.max_overflow,
        "pool_pre_ping": True,  # a restarted database costs one reconnect, not an error
    }
    connect_args: Dict[str, Any] = {"timeout": store.connect_timeout_s}
    if store.schema:
        connect_args["server_settings"] = {"search_path": store.schema}
    kwargs["connect_args"] = connect_args
    return kwargs


def _row(sender_id: Text, event: Event) -> Dict[str, Any]:
    data = event.as_dict()
    return {
        "sender_id": sender_id,
        "type_name": event.type_name,
        "timestamp": data.get("timestamp"),
        "intent_name": data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
        "action_name": data.get("name"),
        "data": json.dumps(data),
    }


def _created_by_another(error: sa.exc.DBAPIError) -> bool:
    text = str(error.orig).lower()
    # SQLite: "table events already exists"; PostgreSQL: DuplicateTable, or the
    # unique index on type names when two CREATE TABLE statements commit together.
    return "already exists" in text or "pg_type_typname_nsp_index" in text


def create_all_tolerating_others(metadata: sa.MetaData, engine: sa.engine.Engine, attempts: int = 3) -> None:
    """`metadata.create_all`, safe when another process creates the same tables at the
    same moment (replicas started together on one database). create_all checks, then
    creates: a table made in between fails the CREATE with "already exists"; the next
    attempt's check then finds it and creates only what is still missing."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as error:
            if attempt == attempts - 1 or not _created_by_another(error):
                raise
            logger.info("Tables were created by another process meanwhile (%s); checking again", error.orig)


class AsyncSQLTrackerStore(TrackerStore, SerializedTrackerAsText):
    """Rasa's SQL tracker store with non-blocking database access."""

    def __init__(
        self,
        domain: Optional[Domain] = None,
        host: Optional[Text] = None,
        event_broker: Optional[EventBroker] = None,
        **kwargs: Any,
    ) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        super().__init__(domain, event_broker, **kwargs)
        self.retry_s = _retry_seconds()
        url = async_url(tracker_store_url(host))
        self._create_tables(url)
        self.engine = create_async_engine(url, **_engine_kwargs(url))
        # SQLite allows one writer at a time. Writers queue on this lock, not in SQLite's
        # busy handler (which sleeps and retries: seconds of tail latency). It is held
        # only for the insert and the commit: each round trip to aiosqlite's thread
        # waits for its turn on a busy event loop, and every save waits for the holder.
        self._write_lock: Optional[asyncio.Lock] = None
        if url.get_backend_name() == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_wal)
            self._write_lock = asyncio.Lock()
        # Core connections (no ORM session: the store only runs these statements).
        self.connect = self.engine.connect
        # RabbitMQ through the outbox (addons/outbox.py): the events' messages are
        # written with the events, and the broker publishes them from this database.
        self.outbox: Optional[outbox.OutboxEventBroker] = (
            event_broker if isinstance(event_broker, outbox.OutboxEventBroker) else None)
        if self.outbox is not None:
            self.outbox.attach(self.engine, self._writing)

    @staticmethod
    def _create_tables(url: sa.engine.URL) -> None:
        """Create Rasa's table with a short-lived sync engine (done once, at start)."""
        backend = url.get_backend_name()
        engine = sa.create_engine(url.set(drivername=backend if backend == "sqlite" else "postgresql"))
        try:
            create_all_tolerating_others(SQLTrackerStore.Base.metadata, engine)
            create_all_tolerating_others(outbox.METADATA, engine)
        finally:
            engine.dispose()

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation`, retrying transient database errors for up to retry_s seconds."""
        deadline = time.monotonic() + self.retry_s
        backoff, attempt = FIRST_BACKOFF_S, 1
        while True:
            try:
                return await operation()
            except Exception as error:  # classified below; never swallowed
                left = deadline - time.monotonic()
                if not transient(error):
                    raise TrackerStoreError(f"tracker store {what} failed: {error}") from error
                if left <= 0:
                    raise TrackerStoreError(
                        f"tracker store {what} failed for {self.retry_s:.0f} s "
                        f"({attempt} attempts), giving up: {error}"
                    ) from error
                logger.warning(
                    "tracker store %s failed (attempt %d: %s: %s); retrying in %.1f s",
                    what, attempt, type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "",
                    min(backoff, left),
                )
                await asyncio.sleep(min(backoff, left))
                backoff, attempt = min(backoff * 2, MAX_BACKOFF_S), attempt + 1

    async def keys(self) -> Iterable[Text]:
        async def query() -> Iterable[Text]:
            async with self.connect() as connection:
                result = await connection.execute(sa.select(EVENTS.c.sender_id).distinct())
                return [sender_id for (sender_id,) in result]

        return await self._retrying("keys", query)

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        return await self._retrieve(sender_id, all_sessions=False)

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        return await self._retrieve(conversation_id, all_sessions=True)

    async def _retrieve(self, sender_id: Text, all_sessions: bool) -> Optional[DialogueStateTracker]:
        async def query() -> list:
            async with self.connect() as connection:
                statement = ALL_EVENTS if all_sessions else SESSION_EVENTS
                result = await connection.execute(statement, {"sender_id": sender_id})
                return [json.loads(data) for (data,) in result]

        events = await self._retrying("read", query)
        if self.domain and events:
            return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        return None

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Append the events the database does not have yet, in one transaction; then
        publish them to the event broker, if there is one."""
        # What the database held when this save began. A retry after a commit whose
        # answer was lost finds those rows stored and appends nothing; they are still
        # published, counted from here.
        stored_before: Optional[int] = None

        async def append() -> None:
            nonlocal stored_before
            async with self.connect() as connection:
                # Rasa's lock store keeps other writers of this conversation out until
                # this save returns, so the count still holds when the rows are written.
                stored = (await connection.execute(SESSION_EVENT_COUNT, {"sender_id": tracker.sender_id})).scalar_one()
                if stored_before is None:
                    stored_before = stored
                rows = [_row(tracker.sender_id, e) for e in itertools.islice(tracker.events, stored, None)]
                if rows:
                    async with self._writing():
                        await connection.execute(INSERT_EVENTS, rows)
                        if self.outbox is not None:  # their messages, in the same transaction
                            new = list(itertools.islice(tracker.events, stored, None))
                            await connection.execute(outbox.INSERT, outbox.rows(tracker.sender_id, new))
                        await connection.commit()

        await self._retrying("save", append)
        if self.outbox is not None:
            self.outbox.saved()
        elif self.event_broker is not None and stored_before is not None:
            new_events = list(itertools.islice(tracker.events, stored_before, None))
            await self._stream_new_events(self.event_broker, new_events, tracker.sender_id)

    def _writing(self) -> AsyncContextManager:
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_wal(connection: Any, _record: Any) -> None:
    """WAL lets readers (analytics, other workers) proceed while a turn is written."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
