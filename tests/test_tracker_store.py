"""Both SQL tracker stores keep conversations across restarts, on SQLite and PostgreSQL,
in Rasa's own table layout: each reads what the other wrote."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
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
