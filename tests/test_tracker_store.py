"""Both SQL tracker stores keep conversations across restarts, on SQLite and PostgreSQL,
in Rasa's own table layout: each reads what the other wrote."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from addons.tracker_store import DEFAULT_URL, AsyncSQLTrackerStore, EnvSQLTrackerStore

def _turn(text: str, intent: str, reply: str):
    return [
        UserUttered(text, intent={"name": intent, "confidence": 0.9}),
        ActionExecuted(f"utter_{intent}"),
        BotUttered(reply, metadata={"utter_action": f"utter_{intent}"}),
        ActionExecuted("action_listen"),
    ]


def _row_count(url: str, sender: str) -> int:
    with sa.create_engine(url).connect() as connection:
        return connection.execute(
            sa.text("SELECT COUNT(*) FROM events WHERE sender_id = :s"), {"s": sender}
        ).scalar()


STORES = [EnvSQLTrackerStore, AsyncSQLTrackerStore]


@pytest.mark.parametrize("first_store", STORES, ids=["sync", "async"])
@pytest.mark.parametrize("second_store", STORES, ids=["then-sync", "then-async"])
def test_conversation_round_trips_through_a_new_store(store_url, monkeypatch, first_store, second_store):
    monkeypatch.setenv("TRACKER_STORE_URL", store_url)
    domain = Domain.empty()
    sender = f"store-{uuid.uuid4().hex}"

    async def scenario():
        first = first_store(domain=domain)
        tracker = DialogueStateTracker.from_events(sender, _turn("hi", "greet", "Hello!"))
        await first.save(tracker)
        # a new store instance is what Rasa builds after a restart
        second = second_store(domain=domain)
        restored = await second.retrieve(sender)
        assert restored is not None
        assert list(restored.events) == list(tracker.events)
        for event in _turn("thanks", "thank", "You're welcome."):
            restored.update(event)
        await second.save(restored)
        await second.save(restored)  # saving again adds nothing
        assert sender in await second.keys()
        return await first_store(domain=domain).retrieve(sender)

    final = asyncio.run(scenario())
    assert [e.text for e in final.events if isinstance(e, UserUttered)] == ["hi", "thanks"]
    assert _row_count(store_url, sender) == 8  # each event stored exactly once


def test_a_replica_starts_when_another_creates_the_tables_at_the_same_moment(tmp_path, monkeypatch):
    """Replicas started together on a new database each check for the events table and
    create it: one's CREATE fails with "table events already exists" when the other's
    commits in between (CI once lost a test module's replicas to it). Here the other
    replica's CREATE is made to land in that gap (a before_create hook); the store still
    starts and works, with one events table."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    monkeypatch.setenv("TRACKER_STORE_URL", url)
    events = SQLTrackerStore.SQLEvent.__table__
    other_replica = sa.create_engine(url)
    raced = []

    def other_replica_creates_it_first(*_args, **_kwargs):
        if not raced:
            raced.append(True)
            with other_replica.begin() as connection:
                events.create(connection)

    sa.event.listen(events, "before_create", other_replica_creates_it_first)
    try:
        store = AsyncSQLTrackerStore(domain=Domain.empty())
    finally:
        sa.event.remove(events, "before_create", other_replica_creates_it_first)
        other_replica.dispose()
    assert raced, "the hook never ran: the race was not reproduced"
    sender = f"race-{uuid.uuid4().hex}"

    async def round_trip():
        await store.save(DialogueStateTracker.from_events(sender, _turn("hi", "greet", "Hello!")))
        restored = await store.retrieve(sender)
        await store.close()
        return restored

    assert [e.text for e in asyncio.run(round_trip()).events if isinstance(e, UserUttered)] == ["hi"]
    with sa.create_engine(url).connect() as connection:
        assert connection.execute(sa.text(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'")).scalar() == 1


def test_environment_selects_the_database(monkeypatch, tmp_path):
    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert EnvSQLTrackerStore().engine.url.render_as_string() == DEFAULT_URL
    configured = f"sqlite:///{tmp_path / 'from-endpoints.db'}"
    assert str(EnvSQLTrackerStore(host=configured).engine.url) == configured
    from_env = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("TRACKER_STORE_URL", from_env)
    assert str(EnvSQLTrackerStore(host=configured).engine.url) == from_env


def test_retrieve_returns_only_the_latest_session_and_full_tracker_all(store_url, monkeypatch):
    from rasa.shared.core.events import SessionStarted

    monkeypatch.setenv("TRACKER_STORE_URL", store_url)
    sender = f"sessions-{uuid.uuid4().hex}"
    events = [
        ActionExecuted("action_session_start"), SessionStarted(timestamp=1.0),
        *_turn("hi", "greet", "Hello!"),
        ActionExecuted("action_session_start"), SessionStarted(timestamp=2e9),
        *_turn("thanks", "thank", "You're welcome."),
    ]
    for i, event in enumerate(events):  # distinct, increasing timestamps
        event.timestamp = 1.0 + i if i < 6 else 2e9 + i

    async def scenario():
        store = AsyncSQLTrackerStore(domain=Domain.empty())
        await store.save(DialogueStateTracker.from_events(sender, events))
        return await store.retrieve(sender), await store.retrieve_full_tracker(sender)

    latest, full = asyncio.run(scenario())
    assert [e.text for e in latest.events if isinstance(e, UserUttered)] == ["thanks"]
    assert [e.text for e in full.events if isinstance(e, UserUttered)] == ["hi", "thanks"]


def test_the_async_store_refuses_an_unsupported_database(monkeypatch):
    from rasa.shared.exceptions import RasaException

    monkeypatch.setenv("TRACKER_STORE_URL", "mysql://root@127.0.0.1/test")
    with pytest.raises(RasaException, match="EnvSQLTrackerStore"):
        AsyncSQLTrackerStore(domain=Domain.empty())


class _FlakySessions:
    """Wraps a store's connection factory: the first `refuse` sessions fail to connect, and the
    next `lose_after_commit` ones commit and then report a lost connection."""

    def __init__(self, real, refuse: int = 0, lose_after_commit: int = 0, error=None):
        self.real, self.refuse, self.lose_after_commit = real, refuse, lose_after_commit
        self.error = error
        self.sessions = 0

    def __call__(self):
        flaky, real = self, self.real()
        self.sessions += 1

        class Session:
            async def __aenter__(self):
                if flaky.error is not None:
                    raise flaky.error
                if flaky.refuse:
                    flaky.refuse -= 1
                    raise ConnectionRefusedError(111, "Connect call failed")
                return await real.__aenter__()

            async def __aexit__(self, *exc):
                result = await real.__aexit__(*exc)
                if exc[0] is None and flaky.lose_after_commit:
                    flaky.lose_after_commit -= 1
                    raise ConnectionResetError(104, "Connection reset by peer")
                return result

        return Session()


class _Broker:
    def __init__(self):
        self.published = []

    def publish(self, event, *args, **kwargs):
        self.published.append(event)


def test_a_database_outage_is_retried_and_each_event_stored_once(store_url, monkeypatch):
    monkeypatch.setenv("TRACKER_STORE_URL", store_url)
    sender = f"retry-{uuid.uuid4().hex}"
    broker = _Broker()

    async def scenario():
        store = AsyncSQLTrackerStore(domain=Domain.empty(), event_broker=broker)
        real = store.connect
        tracker = DialogueStateTracker.from_events(sender, _turn("hi", "greet", "Hello!"))
        store.connect = _FlakySessions(real, refuse=2)  # down, then back
        await store.save(tracker)
        for event in _turn("thanks", "thank", "You're welcome."):
            tracker.update(event)
        # committed, but the answer was lost: the retry must not append the turn again
        store.connect = _FlakySessions(real, lose_after_commit=1)
        await store.save(tracker)
        store.connect = _FlakySessions(real, refuse=1)
        return await store.retrieve(sender)

    restored = asyncio.run(scenario())
    assert [e.text for e in restored.events if isinstance(e, UserUttered)] == ["hi", "thanks"]
    assert _row_count(store_url, sender) == 8
    # published once each, after the commit, in order
    assert [e["event"] for e in broker.published] == ["user", "action", "bot", "action"] * 2
    assert [e["text"] for e in broker.published if e["event"] == "user"] == ["hi", "thanks"]


def test_a_database_down_too_long_fails_the_turn_instead_of_forgetting_it(tmp_path, monkeypatch):
    """Rasa's FailSafeTrackerStore would answer from an empty in-memory tracker; ours raises."""
    import time

    from rasa.core.tracker_store import FailSafeTrackerStore

    from addons.tracker_store import TrackerStoreError

    monkeypatch.setenv("TRACKER_STORE_URL", f"sqlite:///{tmp_path / 'down.db'}")
    monkeypatch.setenv("TRACKER_STORE_RETRY_S", "0.6")
    sender = f"down-{uuid.uuid4().hex}"

    async def scenario():
        store = AsyncSQLTrackerStore(domain=Domain.empty())
        await store.save(DialogueStateTracker.from_events(sender, _turn("hi", "greet", "Hello!")))
        store.connect = _FlakySessions(store.connect, refuse=10**6)
        failsafe = FailSafeTrackerStore(store)  # what Rasa's Agent wraps every store in
        started = time.monotonic()
        with pytest.raises(TrackerStoreError, match="giving up"):
            await failsafe.get_or_create_tracker(sender)
        elapsed = time.monotonic() - started
        tracker = DialogueStateTracker.from_events(sender, _turn("thanks", "thank", "You're welcome."))
        with pytest.raises(TrackerStoreError):
            await failsafe.save(tracker)
        assert failsafe._fallback_tracker_store is None  # nothing went to memory
        return elapsed, store.connect.sessions

    elapsed, attempts = asyncio.run(scenario())
    assert 0.5 <= elapsed < 3
    assert attempts >= 3  # retried with backoff before giving up
    assert _row_count(f"sqlite:///{tmp_path / 'down.db'}", sender) == 4  # the first turn only


def test_a_non_transient_database_error_is_not_retried(tmp_path, monkeypatch):
    from addons.tracker_store import TrackerStoreError

    monkeypatch.setenv("TRACKER_STORE_URL", f"sqlite:///{tmp_path / 'bad.db'}")
    error = sa.exc.ProgrammingError("SELECT", {}, Exception("no such column"))

    async def scenario():
        store = AsyncSQLTrackerStore(domain=Domain.empty())
        store.connect = _FlakySessions(store.connect, error=error)
        with pytest.raises(TrackerStoreError, match="no such column"):
            await store.retrieve("anyone")
        return store.connect.sessions

    assert asyncio.run(scenario()) == 1
