"""assistant/conversations.py reads what Rasa's tracker store wrote, on SQLite and PostgreSQL,
without Rasa: the rows in stored order, one sender's events, counts, the stale senders that
retention deletes, and the reply sources."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import sqlalchemy as sa
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from addons.tracker_store import AsyncSQLTrackerStore
from assistant import conversations
from assistant.conversations import ReplySource
from ops import settings


def _save(url, sender, when, source="knowledge"):
    """A turn as Rasa stores it: the message, the answer action, its message (with a source)."""
    events = [UserUttered("what is the fee?", intent={"name": "card_fee", "confidence": 0.9}, timestamp=when),
              SlotSet("topic", "fees", timestamp=when + 0.5),
              ActionExecuted("action_llm_reply", timestamp=when + 1),
              BotUttered("It is free.", metadata={"source": source, "sources": ["fees"]}, timestamp=when + 2),
              ActionExecuted("action_listen", timestamp=when + 3)]

    async def save():
        store = AsyncSQLTrackerStore(domain=Domain.empty(), host=url)
        await store.save(DialogueStateTracker.from_events(sender, events))
        await store.close()

    asyncio.run(save())


def test_the_module_imports_neither_rasa_nor_rasa_sdk():
    code = ("import json, sys; import assistant.conversations; "
            "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('rasa', 'rasa_sdk', 'addons')]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=settings.ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_what_rasa_stored_is_read_back(store_url):
    old, new = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    engine = sa.create_engine(store_url)
    _save(store_url, f"first-{uuid.uuid4().hex}", time.time())  # the table exists from here on
    with engine.connect() as connection:
        assert conversations.has_events(connection)
        before, count_before = conversations.last_id(connection), conversations.conversation_count(connection)
    _save(store_url, old, time.time() - 40 * 86400, source="fallback")
    _save(store_url, new, time.time(), source="agent")

    with engine.connect() as connection:
        assert conversations.conversation_count(connection) == count_before + 2
        added = list(conversations.rows(connection, after_id=before))
        assert [r.sender_id for r in added] == [old] * 5 + [new] * 5
        assert [r.type_name for r in added[:5]] == ["user", "slot", "action", "bot", "action"]
        assert added[0].intent_name == "card_fee" and added[2].action_name == "action_llm_reply"
        assert [r.id for r in added] == sorted(r.id for r in added)
        assert conversations.last_id(connection) == added[-1].id
        recent = {r.sender_id for r in conversations.rows(connection, since=time.time() - 86400)}
        assert new in recent and old not in recent

        found = conversations.conversations(connection, [new, old, "nobody"])
        assert [e["event"] for e in found[new]] == ["user", "slot", "action", "bot", "action"]
        assert found[new][0]["text"] == "what is the fee?" and found["nobody"] == []
        bots = conversations.conversations(connection, [old], type_name="bot")[old]
        assert [(b["text"], conversations.reply_source(b)) for b in bots] == [("It is free.", ReplySource.FALLBACK)]
        assert conversations.reply_source(found[new][3]) is ReplySource.AGENT
        assert conversations.read_conversations(store_url, [new]) == {new: found[new]}

        stale = {row[0] for row in connection.execute(conversations.stale_senders(time.time() - 30 * 86400))}
        assert old in stale and new not in stale
        assert conversations.event_count(connection, [old, new]) == 10
    with engine.begin() as connection:
        conversations.delete_conversations(connection, [old])
    with engine.connect() as connection:
        assert conversations.event_count(connection, [old, new]) == 5
    engine.dispose()


def test_an_empty_store_has_no_events_table(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with engine.connect() as connection:
        assert not conversations.has_events(connection)


def test_reply_sources_are_the_strings_rasa_stores():
    assert [s.value for s in conversations.LLM_REPLY_SOURCES] == ["knowledge", "llm", "no_knowledge", "fallback",
                                                                  "intent", "clarify"]
    assert ReplySource.LLM == "llm" and str(ReplySource.NO_KNOWLEDGE) == "no_knowledge"
    assert json.dumps({"source": ReplySource.AGENT}) == '{"source": "agent"}'
    assert conversations.reply_source({"metadata": {"source": "something else"}}) is None
    assert conversations.reply_source({}) is None
