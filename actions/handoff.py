"""Handing a conversation to a person, and keeping the bot quiet until it comes back.

`request_human`, at any moment (also in a form: the form rejects it, see
actions/forms/), runs utter_request_human (custom {handoff: true}: the chat widget
shows its notice) and then action_handoff, which
- queues the conversation in the bank database's handoffs table (sender_id, customer,
  status open, reason, time), where `python -m ops handoffs` lists it;
- ends any active form (its half-filled slots are cleared);
- sets the slot handoff_active and pauses the conversation with Rasa's own
  ConversationPaused event. While paused, Rasa stores every customer message in the
  tracker (the person taking over reads them there) and predicts no action at all: no
  reply, no LLM call, whatever the message is. This is Rasa's built-in mechanism for a
  human takeover, so no rule or policy has to match "any message".

`python -m ops release SENDER_ID` (ops/handoff.py) marks the handoff released and, through
Rasa's authenticated HTTP API, appends ConversationResumed (and handoff_active false),
then triggers the intent handoff_released, whose rule sends utter_handoff_released
(custom {handoff: false}: the widget removes the notice). The bot answers again.

A paused conversation would be un-paused by a new session (Rasa's SessionStarted resets
the tracker after 60 idle minutes), so action_session_start carries handoff_active over
and pauses the new session again while the handoff is open.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import (
    ActionExecuted,
    ActiveLoop,
    ConversationPaused,
    EventType,
    SessionStarted,
    SlotSet,
)
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from assistant import bank
from actions.tracker import FORM_SLOTS, REQUESTED_SLOT, customer_id

logger = logging.getLogger(__name__)

HANDOFF_SLOT = "handoff_active"
FORM_TOPICS = {
    "lost_card_form": "a lost, stolen or compromised card",
    "transfer_form": "a transfer",
    "dispute_form": "a card payment they don't recognise",
}


def pause_events() -> List[EventType]:
    """Listen, then pause: the messages that follow are stored and not answered."""
    return [SlotSet(HANDOFF_SLOT, True), ActionExecuted("action_listen"), ConversationPaused()]


class ActionHandoff(Action):
    def name(self) -> Text:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        form = (tracker.active_loop or {}).get("name")
        events: List[EventType] = []
        if form:
            events += [ActiveLoop(None), SlotSet(REQUESTED_SLOT, None)]
            events += [SlotSet(name, None) for name in FORM_SLOTS.get(form, []) if tracker.get_slot(name) is not None]
        reason = "asked for a person"
        if form in FORM_TOPICS:
            reason += f" while asking about {FORM_TOPICS[form]}"
        try:
            handoff, created = await bank.get().open_handoff(tracker.sender_id, customer_id(tracker), reason)
        except Exception:  # the database is down: say so rather than leave the customer waiting
            logger.exception("could not queue the handoff of %s", tracker.sender_id)
            dispatcher.utter_message(response="utter_handoff_failed")
            return events
        logger.info("handoff %s for %s: %s", "queued" if created else "already open", tracker.sender_id, reason)
        return events + pause_events()


class ActionSessionStart(Action):
    """Rasa's session start, keeping a handed-off conversation paused.

    Only the handoff state (and Rasa's session_started_metadata) is carried over: a
    form left half-filled in the expired session is not.
    """

    def name(self) -> Text:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        events: List[EventType] = [SessionStarted()]
        metadata: Dict[str, Any] = tracker.get_slot("session_started_metadata") or {}
        if metadata:
            events.append(SlotSet("session_started_metadata", metadata))
        if tracker.get_slot(HANDOFF_SLOT):
            return events + pause_events()
        return events + [ActionExecuted("action_listen")]
