"""Retention and erasure on SQLite and PostgreSQL, dry runs first."""
from __future__ import annotations

import asyncio
import time
import uuid

import sqlalchemy as sa
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from addons.tracker_store import AsyncSQLTrackerStore
from ops import retention


def _store(url, sender, age_days):
    when = time.time() - age_days * 86400
    events = [UserUttered("hi", intent={"name": "greet", "confidence": 1.0}, timestamp=when),
              ActionExecuted("utter_greet", timestamp=when + 1),
              BotUttered("Hello!", timestamp=when + 2)]

    async def save():
        store = AsyncSQLTrackerStore(domain=Domain.empty(), host=url)
        await store.save(DialogueStateTracker.from_events(sender, events))
        await store.close()

    asyncio.run(save())


def _count(url, sender):
    with sa.create_engine(url).connect() as connection:
        return connection.execute(
            sa.text("SELECT COUNT(*) FROM events WHERE sender_id = :s"), {"s": sender}
        ).scalar()


def test_retention_deletes_only_old_conversations(store_url, monkeypatch):
    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    old, recent = f"old-{uuid.uuid4().hex}", f"recent-{uuid.uuid4().hex}"
    _store(store_url, old, age_days=400)
    _store(store_url, recent, age_days=1)

    dry = retention.delete_older_than(365, dry_run=True, url=store_url)
    assert dry.conversations >= 1 and dry.events >= 3
    assert _count(store_url, old) == 3  # the dry run changed nothing
    done = retention.delete_older_than(365, dry_run=False, url=store_url)
    assert done.events == dry.events
    assert _count(store_url, old) == 0 and _count(store_url, recent) == 3


def test_erase_removes_one_sender_everywhere(store_url, tmp_path, monkeypatch):
    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    target, other = f"erase-{uuid.uuid4().hex}", f"keep-{uuid.uuid4().hex}"
    _store(store_url, target, age_days=0)
    _store(store_url, other, age_days=0)
    log = tmp_path / "actions.log"
    log.write_text(f"LLM reply failed for {target}: timeout\nstarted\nLLM reply failed for {other}: timeout\n")

    dry = retention.erase_sender(target, dry_run=True, url=store_url, log_dir=tmp_path)
    assert (dry.conversations, dry.events, dry.log_lines) == (1, 3, 1)
    assert _count(store_url, target) == 3 and target in log.read_text()
    retention.erase_sender(target, dry_run=False, url=store_url, log_dir=tmp_path)
    assert _count(store_url, target) == 0 and _count(store_url, other) == 3
    assert target not in log.read_text() and other in log.read_text()
