"""Conversations as Rasa's SQL tracker store keeps them: the read side of its `events` table,
and the sources a bot message names.

Rasa writes the table (its SQLTrackerStore, or addons/tracker_store.py); the operator's
tools (status, analytics, exporter, retention, erase, transcripts), the benchmarks and
the tests read it here, with SQLAlchemy Core on SQLite or PostgreSQL, and with neither
Rasa nor rasa-sdk imported (tests/test_conversations.py).

A row is one event: `type_name` ("user", "bot", "action", "slot", ...), the indexed
`intent_name` / `action_name`, the event's `timestamp`, and `data`, the event as Rasa's
JSON. Rows are read in `id` order, the order Rasa stored them.
"""
from __future__ import annotations

import enum
import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import sqlalchemy as sa

from assistant import config

DEFAULT_TRACKER_STORE_URL = config.DEFAULT_TRACKER_STORE_URL

# Rasa 3.6's SQLTrackerStore.SQLEvent, as a plain table: what is read and deleted here.
metadata = sa.MetaData()
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("type_name", sa.String(255), nullable=False),
    sa.Column("timestamp", sa.Float),
    sa.Column("intent_name", sa.String(255)),
    sa.Column("action_name", sa.String(255)),
    sa.Column("data", sa.Text),
)
_BATCH = 500  # senders per IN (...) query


class ReplySource(str, enum.Enum):
    """`metadata.source` of a bot message: what produced it."""

    KNOWLEDGE = "knowledge"  # action_llm_reply: the knowledge page's own sentences
    LLM = "llm"  # action_llm_reply: a generated candidate that won against them
    NO_KNOWLEDGE = "no_knowledge"  # action_llm_reply: the honest "I don't know"
    FALLBACK = "fallback"  # action_llm_reply: the polite template, the generator failed
    INTENT = "intent"  # action_llm_reply: the intent's own response
    CLARIFY = "clarify"  # action_llm_reply: "which of these do you mean?" with two pages as buttons
    AGENT = "agent"  # a person in the agent console (console/)

    def __str__(self) -> str:  # the value, also where Python 3.10 would print the name
        return self.value


# The sources of action_llm_reply's messages (the exporter counts them by source).
LLM_REPLY_SOURCES = (ReplySource.KNOWLEDGE, ReplySource.LLM, ReplySource.NO_KNOWLEDGE, ReplySource.FALLBACK,
                     ReplySource.INTENT, ReplySource.CLARIFY)


def reply_source(event: Dict[str, Any]) -> Optional[ReplySource]:
    """The source a bot event's metadata names; None when it names none we know."""
    value = (event.get("metadata") or {}).get("source")
    try:
        return ReplySource(value)
    except ValueError:
        return None


def tracker_store_url(configured: Optional[str] = None) -> str:
    """TRACKER_STORE_URL, else the endpoint's own URL, else the SQLite file Rasa uses by default."""
    return config.tracker_store().resolved_url(configured)


def has_events(connection: sa.engine.Connection) -> bool:
    """Whether Rasa has made its table yet (it does on its first start)."""
    return sa.inspect(connection).has_table(events.name)


def conversation_count(connection: sa.engine.Connection) -> int:
    return connection.execute(sa.select(sa.func.count(sa.distinct(events.c.sender_id)))).scalar_one()


def last_id(connection: sa.engine.Connection) -> int:
    return connection.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one()


def rows(connection: sa.engine.Connection, *, since: Optional[float] = None,
         after_id: Optional[int] = None) -> Iterator[sa.engine.Row]:
    """Every event row (id, sender_id, type_name, timestamp, intent_name, action_name, data)
    in stored order: those with a timestamp from `since` on, or an id above `after_id`."""
    query = sa.select(events.c.id, events.c.sender_id, events.c.type_name, events.c.timestamp,
                      events.c.intent_name, events.c.action_name, events.c.data)
    if since is not None:
        query = query.where(events.c.timestamp >= since)
    if after_id is not None:
        query = query.where(events.c.id > after_id)
    return iter(connection.execute(query.order_by(events.c.id)))


def decoded(row: Union[sa.engine.Row, Sequence[Any]]) -> Dict[str, Any]:
    """One row as Rasa's event dict, with `event` (the type) and `_id` (the row id)."""
    row_id, kind, data = row[0], row[1], row[2]
    return {**json.loads(data or "{}"), "event": kind, "_id": row_id}


def conversations(connection: sa.engine.Connection, senders: Iterable[str],
                  type_name: Optional[str] = None) -> Dict[str, List[Dict[str, Any]]]:
    """Each sender's events (only those of `type_name`, if given) as decoded dicts, in stored order."""
    senders = list(dict.fromkeys(senders))
    found: Dict[str, List[Dict[str, Any]]] = {sender: [] for sender in senders}
    for start in range(0, len(senders), _BATCH):
        query = (sa.select(events.c.id, events.c.type_name, events.c.data, events.c.sender_id)
                 .where(events.c.sender_id.in_(senders[start:start + _BATCH])))
        if type_name is not None:
            query = query.where(events.c.type_name == type_name)
        for row in connection.execute(query.order_by(events.c.id)):
            found[row.sender_id].append(decoded(row))
    return found


def read_conversations(url: str, senders: Iterable[str],
                       type_name: Optional[str] = None) -> Dict[str, List[Dict[str, Any]]]:
    """`conversations` of the tracker store at `url` (its own engine, disposed after)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return conversations(connection, senders, type_name)
    finally:
        engine.dispose()


def stale_senders(cutoff: float) -> sa.sql.Select:
    """The senders whose latest event is older than `cutoff` (a Unix time)."""
    return (sa.select(events.c.sender_id).group_by(events.c.sender_id)
            .having(sa.func.max(events.c.timestamp) < cutoff))


def event_count(connection: sa.engine.Connection, senders: Sequence[str]) -> int:
    """How many events these senders have."""
    total = 0
    for start in range(0, len(senders), _BATCH):
        query = sa.select(sa.func.count()).select_from(events).where(
            events.c.sender_id.in_(list(senders[start:start + _BATCH])))
        total += connection.execute(query).scalar_one()
    return total


def delete_conversations(connection: sa.engine.Connection, senders: Union[Sequence[str], sa.sql.Select]) -> None:
    """Delete every event of these senders (a list, or a query such as `stale_senders`)."""
    if isinstance(senders, sa.sql.Select):
        connection.execute(events.delete().where(events.c.sender_id.in_(senders.scalar_subquery())))
        return
    for start in range(0, len(senders), _BATCH):
        connection.execute(events.delete().where(events.c.sender_id.in_(list(senders[start:start + _BATCH]))))
