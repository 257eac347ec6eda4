"""Rasa's SQL tracker store, configured by one environment variable, sync or async.

`TRACKER_STORE_URL` is an SQLAlchemy URL: `sqlite:///rasa.db` (the default, a file in
the working directory) or `postgresql://user:password@host:5432/db` at scale. It wins
over a `url:` in endpoints.yml, so the same files serve a laptop and a cluster.

Both stores keep Rasa's own `events` table layout (the table is Rasa's
SQLTrackerStore.SQLEvent), so existing data, analytics and retention work with either:
- EnvSQLTrackerStore is Rasa's SQLTrackerStore: its queries block the event loop.
- AsyncSQLTrackerStore runs the same queries with SQLAlchemy's asyncio support
  (aiosqlite, asyncpg), so one slow query never stalls the other conversations.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from typing import Any, AsyncContextManager, Dict, Iterable, Optional, Text

import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker
from rasa.core.constants import POSTGRESQL_MAX_OVERFLOW, POSTGRESQL_POOL_SIZE, POSTGRESQL_SCHEMA
from rasa.core.tracker_store import (
    POSTGRESQL_DEFAULT_MAX_OVERFLOW,
    POSTGRESQL_DEFAULT_POOL_SIZE,
    SerializedTrackerAsText,
    SQLTrackerStore,
    TrackerStore,
)
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import INTENT_NAME_KEY

logger = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///rasa.db"
EVENTS = SQLTrackerStore.SQLEvent.__table__
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def tracker_store_url(configured: Optional[str] = None) -> str:
    return os.environ.get("TRACKER_STORE_URL") or configured or DEFAULT_URL


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
        return {}
    kwargs: Dict[str, Any] = {
        "pool_size": int(os.environ.get(POSTGRESQL_POOL_SIZE, POSTGRESQL_DEFAULT_POOL_SIZE)),
        "max_overflow": int(os.environ.get(POSTGRESQL_MAX_OVERFLOW, POSTGRESQL_DEFAULT_MAX_OVERFLOW)),
        "pool_pre_ping": True,  # a restarted database costs one reconnect, not an error
    }
    schema = os.environ.get(POSTGRESQL_SCHEMA)
    if schema:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
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


class AsyncSQLTrackerStore(TrackerStore, SerializedTrackerAsText):
    """Rasa's SQL tracker store with non-blocking database access."""

    def __init__(
        self,
        domain: Optional[Domain] = None,
        host: Optional[Text] = None,
        event_broker: Optional[EventBroker] = None,
        **kwargs: Any,
    ) -> None:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
        from sqlalchemy.orm import sessionmaker

        super().__init__(domain, event_broker, **kwargs)
        url = async_url(tracker_store_url(host))
        self._create_tables(url)
        self.engine = create_async_engine(url, **_engine_kwargs(url))
        # SQLite allows one writer at a time; queueing writers here, instead of in
        # SQLite's busy handler (which sleeps and retries), keeps tail latency low.
        self._write_lock: Optional[asyncio.Lock] = None
        if url.get_backend_name() == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_wal)
            self._write_lock = asyncio.Lock()
        self.sessionmaker = sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @staticmethod
    def _create_tables(url: sa.engine.URL) -> None:
        """Create Rasa's table with a short-lived sync engine (done once, at start)."""
        backend = url.get_backend_name()
        engine = sa.create_engine(url.set(drivername=backend if backend == "sqlite" else "postgresql"))
        try:
            SQLTrackerStore.Base.metadata.create_all(engine)
        finally:
            engine.dispose()

    @staticmethod
    def _events_query(sender_id: Text, all_sessions: bool) -> sa.sql.Select:
        """The conversation's events in insertion order, like Rasa's `_event_query`."""
        query = sa.select(EVENTS.c.data).where(EVENTS.c.sender_id == sender_id)
        if not all_sessions:
            session_start = (
                sa.select(sa.func.max(EVENTS.c.timestamp))
                .where(
                    EVENTS.c.sender_id == sender_id,
                    EVENTS.c.type_name == SessionStarted.type_name,
                )
                .scalar_subquery()
            )
            query = query.where(
                sa.or_(EVENTS.c.timestamp >= session_start, session_start.is_(None))
            )
        return query.order_by(EVENTS.c.id)

    async def keys(self) -> Iterable[Text]:
        async with self.sessionmaker() as session:
            result = await session.execute(sa.select(EVENTS.c.sender_id).distinct())
            return [sender_id for (sender_id,) in result]

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        return await self._retrieve(sender_id, all_sessions=False)

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        return await self._retrieve(conversation_id, all_sessions=True)

    async def _retrieve(self, sender_id: Text, all_sessions: bool) -> Optional[DialogueStateTracker]:
        async with self.sessionmaker() as session:
            result = await session.execute(self._events_query(sender_id, all_sessions))
            events = [json.loads(data) for (data,) in result]
        if self.domain and events:
            return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        return None

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Append the events the database does not have yet, in one transaction."""
        await self.stream_events(tracker)
        count = sa.select(sa.func.count()).select_from(
            self._events_query(tracker.sender_id, all_sessions=False).subquery()
        )
        async with self._writing():
            async with self.sessionmaker() as session, session.begin():
                stored = (await session.execute(count)).scalar_one()
                rows = [_row(tracker.sender_id, e) for e in itertools.islice(tracker.events, stored, None)]
                if rows:
                    await session.execute(sa.insert(EVENTS), rows)

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
