"""Human handoff: action_handoff queues and pauses, action_session_start keeps the pause,
`python -m ops handoffs` / `release` list and release (against a stand-in Rasa HTTP API),
and the widget's history hides the release's external intent. SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted as RasaActionExecuted
from rasa.shared.core.events import ActiveLoop as RasaActiveLoop
from rasa.shared.core.events import BotUttered, UserUttered
from rasa.shared.core.events import SlotSet as RasaSlotSet
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity
from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, ActiveLoop, ConversationPaused, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import handoff
from assistant import bank, config
from ops import handoff as ops_handoff
from ops import settings

DOMAIN = Domain.load(str(settings.ROOT / "domain"))
DOMAIN_DICT = DOMAIN.as_dict()
PAUSE = [SlotSet("handoff_active", True), ActionExecuted("action_listen"), ConversationPaused()]


def tracker_of(events, sender="web-1") -> Tracker:
    state = DialogueStateTracker.from_events(sender, events, slots=DOMAIN.slots).current_state(EventVerbosity.ALL)
    return Tracker.from_dict(state)


def run(action, tracker, url=None):
    async def main():
        db = bank.Bank(url)
        bank.use(db)
        try:
            dispatcher = CollectingDispatcher()
            events = await action.run(dispatcher, tracker, DOMAIN_DICT)
            return events, [m.get("response") or m.get("text") for m in dispatcher.messages]
        finally:
            bank.use(None)
            await db.close()

    return asyncio.run(main())


def user(text, intent, customer=None):
    """A user message; `customer`: the identity the channel verified (None: nobody)."""
    return UserUttered(text, {"name": intent, "confidence": 0.9},
                       metadata={config.VERIFIED_CUSTOMER_KEY: customer} if customer else {}, input_channel="rest")


@pytest.fixture
def db_url(bank_url, monkeypatch):
    monkeypatch.setenv("BANK_DB_URL", bank_url)
    return bank_url


def test_handoff_queues_the_conversation_and_pauses_it(db_url):
    tracker = tracker_of([RasaActionExecuted("action_listen"), user("human please", "request_human", "C1001"),
                          RasaActionExecuted("utter_request_human")])
    assert run(handoff.ActionHandoff(), tracker) == (PAUSE, [])
    [queued] = bank.list_handoffs(db_url)
    assert (queued.sender_id, queued.customer_id, queued.status, queued.reason) == (
        "web-1", "C1001", "open", "asked for a person")
    # asked twice before anyone released it: still one entry
    assert run(handoff.ActionHandoff(), tracker) == (PAUSE, [])
    assert len(bank.list_handoffs(db_url)) == 1


def test_a_customer_who_is_not_identified_is_handed_off_without_a_customer(db_url):
    """A person can help someone who cannot sign in; the queue names no customer for them."""
    tracker = tracker_of([RasaActionExecuted("action_listen"),
                          UserUttered("human please", {"name": "request_human"}, metadata={"customer_id": "C1002"}),
                          RasaActionExecuted("utter_request_human")], sender="web-2")
    assert run(handoff.ActionHandoff(), tracker) == (PAUSE, [])
    [queued] = bank.list_handoffs(db_url)
    assert (queued.sender_id, queued.customer_id) == ("web-2", None)


def test_handoff_during_a_form_ends_the_form(db_url):
    tracker = tracker_of([
        RasaActionExecuted("action_listen"), user("I don't know this payment", "card_payment_not_recognised", "C1002"),
        RasaActionExecuted("dispute_form"), RasaActiveLoop("dispute_form"), RasaSlotSet("payment_id", "TX-1002-01"),
        RasaSlotSet("requested_slot", "payment_confirmed"), RasaActionExecuted("action_listen"),
        user("let me talk to an agent", "request_human", "C1002"), RasaActionExecuted("utter_request_human"),
    ])
    events, messages = run(handoff.ActionHandoff(), tracker)
    assert events == [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet("payment_id", None), *PAUSE]
    assert messages == []
    [queued] = bank.list_handoffs(db_url)
    assert (queued.customer_id, queued.reason) == (
        "C1002", "asked for a person while asking about a card payment they don't recognise")


def test_without_the_database_the_customer_is_told_and_nothing_pauses(monkeypatch):
    url = "postgresql://nobody@127.0.0.1:9/none"  # nothing listens on port 9
    monkeypatch.setenv("BANK_DB_URL", url)
    tracker = tracker_of([user("human", "request_human")])
    assert run(handoff.ActionHandoff(), tracker, url) == ([], ["utter_handoff_failed"])


def test_a_new_session_stays_paused_while_handed_off():
    start = handoff.ActionSessionStart()
    assert run(start, tracker_of([])) == ([SessionStarted(), ActionExecuted("action_listen")], [])
    handed_off = tracker_of([user("human", "request_human"), RasaSlotSet("handoff_active", True),
                             RasaSlotSet("card_last4", "4821"),
                             RasaSlotSet("session_started_metadata", {"customer_id": "C1002"})])
    assert run(start, handed_off) == (
        [SessionStarted(), SlotSet("session_started_metadata", {"customer_id": "C1002"}), *PAUSE], [])


# -- the operators' side ---------------------------------------------------------------------


class FakeRasa:
    """Rasa's HTTP API as far as a release uses it: records requests, answers like Rasa."""

    def __init__(self, status=200):
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                answer = {"tracker": {}}
                if "trigger_intent" in self.path:
                    answer["messages"] = [
                        {"recipient_id": "web-1", "text": "You're chatting with Lakeside Bank's virtual assistant again."},
                        {"recipient_id": "web-1", "custom": {"handoff": False}},
                    ]
                data = json.dumps(answer if status == 200 else {"message": "nope"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_rasa():
    server = FakeRasa()
    yield server
    server.close()


def _queue(url, *senders):
    async def main():
        db = bank.Bank(url)
        try:
            for sender in senders:
                await db.open_handoff(sender, "C1001", "asked for a person")
        finally:
            await db.close()

    asyncio.run(main())


def test_release_resumes_the_conversation_through_the_api(db_url, fake_rasa):
    _queue(db_url, "web/1", "web-2")
    result = ops_handoff.release("web/1", fake_rasa.url, token="t0k", released_by="ana")
    assert fake_rasa.requests == [
        ("/conversations/web%2F1/tracker/events?token=t0k",
         [{"event": "resume"}, {"event": "slot", "name": "handoff_active", "value": False}]),
        ("/conversations/web%2F1/trigger_intent?output_channel=latest&token=t0k", {"name": "handoff_released"}),
    ]
    assert result["messages"][1] == {"recipient_id": "web-1", "custom": {"handoff": False}}
    assert (result["handoff"].sender_id, result["handoff"].status, result["handoff"].released_by) == (
        "web/1", "released", "ana")
    assert [h.sender_id for h in bank.list_handoffs(db_url)] == ["web-2"]


def test_release_needs_an_open_handoff(db_url, fake_rasa):
    with pytest.raises(ops_handoff.HandoffError, match="no open handoff for 'web-9'"):
        ops_handoff.release("web-9", fake_rasa.url, token="t")
    assert fake_rasa.requests == []


def test_a_refused_release_leaves_the_handoff_open(db_url):
    _queue(db_url, "web-1")
    refusing = FakeRasa(status=401)
    try:
        with pytest.raises(ops_handoff.HandoffError, match="Rasa answered 401"):
            ops_handoff.release("web-1", refusing.url, token="wrong")
    finally:
        refusing.close()
    with pytest.raises(ops_handoff.HandoffError, match="not reachable"):
        ops_handoff.release("web-1", "http://127.0.0.1:9", token="t")
    assert [h.status for h in bank.list_handoffs(db_url)] == ["open"]


def test_queue_text():
    t0 = dt.datetime(2026, 3, 11, 9, 0)
    queue = [bank.Handoff("web-1", "C1001", "open", "asked for a person", t0, None, None),
             bank.Handoff("rest-7", None, "released", "asked for a person while asking about a transfer", t0,
                          t0 + dt.timedelta(minutes=75), "ana")]
    assert ops_handoff.queue_text(queue, now=t0 + dt.timedelta(minutes=12)).splitlines() == [
        "SENDER  CUSTOMER  STATUS    REQUESTED (UTC)   WAITING     REASON",
        "web-1   C1001     open      2026-03-11 09:00  12 min      asked for a person",
        "rest-7  -         released  2026-03-11 09:00  1 h 15 min  asked for a person while asking about a "
        "transfer (released by ana)",
    ]
    assert ops_handoff.queue_text([]) == "no conversations are waiting for a person"


def test_cli_lists_and_releases(db_url, fake_rasa, monkeypatch, capsys):
    from ops.__main__ import main

    monkeypatch.setenv("RASA_API_TOKEN", "t0k")
    assert main(["handoffs"]) == 0
    assert capsys.readouterr().out.strip() == "no conversations are waiting for a person"
    _queue(db_url, "web-1")
    assert main(["handoffs"]) == 0
    assert "web-1   C1001     open" in capsys.readouterr().out
    assert main(["release", "web-1", "--rasa-url", fake_rasa.url, "--by", "ana"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "released web-1 to the bot (by ana)",
        "  bot: You're chatting with Lakeside Bank's virtual assistant again.",
    ]
    assert fake_rasa.requests[0][0] == "/conversations/web-1/tracker/events?token=t0k"
    assert main(["release", "web-1", "--rasa-url", fake_rasa.url]) == 1
    assert "no open handoff" in capsys.readouterr().err
    assert main(["handoffs", "--all"]) == 0
    assert "released" in capsys.readouterr().out


def test_widget_history_hides_the_release_intent():
    from addons.channels import history

    events = [
        UserUttered("human please", {"name": "request_human"}),
        BotUttered("I'm connecting you", {"custom": {"handoff": True}}),
        UserUttered.create_external("handoff_released"),
        BotUttered("You're chatting with Lakeside Bank's virtual assistant again.", {"custom": {"handoff": False}}),
    ]
    view = history(events)
    assert [(m["from"], m["text"]) for m in view["messages"]] == [
        ("user", "human please"), ("bot", "I'm connecting you"),
        ("bot", "You're chatting with Lakeside Bank's virtual assistant again."),
    ]
    assert view["handoff"] is False
