"""The SQL tracker store keeps conversations across restarts, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import sqlalchemy as sa
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from addons.tracker_store import DEFAULT_URL, EnvSQLTrackerStore

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_available() -> bool:
    try:
        with sa.create_engine(POSTGRES_URL).connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except Exception:  # any failure means: no server to test against here
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    if not _postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    return POSTGRES_URL


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


def test_conversation_round_trips_through_a_new_store(store_url, monkeypatch):
    monkeypatch.setenv("TRACKER_STORE_URL", store_url)
    domain = Domain.empty()
    sender = f"store-{uuid.uuid4().hex}"

    async def scenario():
        first = EnvSQLTrackerStore(domain=domain)
        tracker = DialogueStateTracker.from_events(sender, _turn("hi", "greet", "Hello!"))
        await first.save(tracker)
        # a new store instance is what Rasa builds after a restart
        second = EnvSQLTrackerStore(domain=domain)
        restored = await second.retrieve(sender)
        assert restored is not None
        assert list(restored.events) == list(tracker.events)
        for event in _turn("thanks", "thank", "You're welcome."):
            restored.update(event)
        await second.save(restored)
        return await EnvSQLTrackerStore(domain=domain).retrieve(sender)

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
