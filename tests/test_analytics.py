"""The analytics report renders from a seeded tracker store and counts what happened."""
from __future__ import annotations

import asyncio

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from addons.tracker_store import AsyncSQLTrackerStore
from ops.analytics import write_report

DAY = 86400.0
T0 = 1_790_000_000.0  # 2026-09-21


def _user(text, intent, confidence, when, ranking=None):
    parse = {"intent": {"name": intent, "confidence": confidence},
             "intent_ranking": ranking or [{"name": intent, "confidence": confidence}]}
    return UserUttered(text, intent=parse["intent"], parse_data=parse, timestamp=when)


def _seed(url):
    conversations = {
        "a": [_user("hi", "greet", 0.99, T0), ActionExecuted("utter_greet", timestamp=T0 + 1),
              _user("can I talk to a human", "request_human", 0.95, T0 + 2),
              ActionExecuted("utter_request_human", timestamp=T0 + 3)],
        "b": [_user("what's the tallest building", "nlu_fallback", 0.75, T0 + DAY,
                    [{"name": "nlu_fallback", "confidence": 0.75}, {"name": "country_support", "confidence": 0.12}]),
              ActionExecuted("action_llm_reply", timestamp=T0 + DAY + 1),
              BotUttered("Sorry, I can't answer that right now.", metadata={"source": "fallback"}, timestamp=T0 + DAY + 2)],
        "c": [_user("card still not here", "card_arrival", 0.64, T0 + DAY),
              ActionExecuted("utter_card_arrival", timestamp=T0 + DAY + 1)],
    }

    async def save():
        store = AsyncSQLTrackerStore(domain=Domain.empty(), host=url)
        for sender, events in conversations.items():
            await store.save(DialogueStateTracker.from_events(sender, events))
        await store.close()

    asyncio.run(save())


def test_report_from_a_seeded_store(tmp_path, monkeypatch):
    from rasa.shared.nlu.training_data.loading import load_data

    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    _seed(url)
    result = write_report(url, tmp_path / "out")

    assert result.conversations_per_day == {"2026-09-21": 1, "2026-09-22": 2}
    assert result.turns_per_conversation == [1, 1, 2]
    assert result.user_turns == 4
    assert (result.fallback_turns, result.llm_turns, result.handoff_turns, result.llm_fallback_replies) == (1, 1, 1, 1)
    assert dict(result.top_intents)["greet"] == 1
    # least confident first; a fallback turn is listed under the model's best real guess
    assert [(round(c, 2), g) for c, _, g, _ in result.low_confidence[:2]] == [(0.12, "country_support"), (0.64, "card_arrival")]

    page = (tmp_path / "out" / "analytics.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "tallest building" in page
    assert "LLM replies 25.0%" in (tmp_path / "out" / "analytics.txt").read_text()
    candidates = load_data(str(tmp_path / "out" / "candidates.yml"))
    assert {(m.get("intent"), m.get("text")) for m in candidates.intent_examples} >= {
        ("country_support", "what's the tallest building"), ("card_arrival", "card still not here")}


def test_an_empty_store_gives_an_empty_report(tmp_path):
    result = write_report(f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "out")
    assert result.user_turns == 0 and (tmp_path / "out" / "analytics.html").is_file()


def test_handoff_outcomes_in_the_report(tmp_path, monkeypatch):
    """Requested, answered by a person (agent console messages), handed back, closed, open."""
    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    agent = {"source": "agent", "author": "alice", "author_name": "Alice"}

    def asked(when):
        return [_user("a person please", "request_human", 0.97, when),
                ActionExecuted("utter_request_human", timestamp=when + 1)]

    conversations = {
        "released": asked(T0) + [BotUttered("Hi, Alice here", metadata=agent, timestamp=T0 + 5),
                                 BotUttered("Anything else?", metadata=agent, timestamp=T0 + 6),
                                 _user("/handoff_released", "handoff_released", 1.0, T0 + 9)],
        "closed": asked(T0) + [BotUttered("Done, closing", data={"custom": {"handoff": False}}, metadata=agent,
                                          timestamp=T0 + 7)],
        "open": asked(T0),
    }

    async def save():
        store = AsyncSQLTrackerStore(domain=Domain.empty(), host=url)
        for sender, events in conversations.items():
            await store.save(DialogueStateTracker.from_events(sender, events))
        await store.close()

    asyncio.run(save())
    result = write_report(url, tmp_path / "out")
    assert (result.handoff_turns, result.agent_conversations, result.agent_messages) == (3, 2, 3)
    assert (result.handoffs_released, result.handoffs_closed) == (1, 1)
    assert result.user_turns == 3  # the triggered handoff_released is not a customer's message
    text = (tmp_path / "out" / "analytics.txt").read_text()
    assert ("handoffs: 3 requested; a person answered 2 conversations (3 messages); 1 handed back to the bot, "
            "1 closed, 1 still open") in text
