"""What the three forms share: their common validation (digressions, stop, handoff,
blank messages, stale slots, sign-in), the sign-in answer, and the bank's today.
The forms themselves: lost_card.py, transfer.py, dispute.py (the package's doc says how
a form turn goes).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from abc import abstractmethod
from typing import List, Sequence

from rasa_sdk import FormValidationAction, Tracker
from rasa_sdk.events import ActionExecutionRejected, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.tracker import (
    FORM_SLOTS,
    REQUESTED_SLOT,
    customer_id,
    drop_trailing_slots,
    latest_intent,
    latest_text,
    set_this_turn,
    slot_before_turn,
)

logger = logging.getLogger("actions.forms")

HUMAN_BUTTON = {"title": "Talk to a person", "payload": "/request_human"}
# Intents a form answer is often classified as; anything else may be a digression.
ANSWER_INTENTS = {"inform", "affirm", "deny", "nlu_fallback"}
STOP = re.compile(r"^(?:stop|cancel|quit|exit|never ?mind|forget (?:it|about it)|leave it|no thanks|"
                  r"i don'?t want to|not now)[.!]*$", re.IGNORECASE)
# What an account action answers a customer who is not identified (see customer_id).
SIGN_IN_REQUIRED = ("To do that I need to know it's you. Please sign in to the Lakeside app or website and chat "
                    "with us from there, and I'll help you straight away.")
# What the customer can do alone meanwhile, in the words of knowledge/lost-stolen-compromised-card.md.
LOST_CARD_WITHOUT_APP = (" Meanwhile you can freeze it yourself in the Lakeside app under Card > Freeze, or cancel it "
                         "under Card > Report lost or stolen. If you can't get into the app, call the number on the "
                         "back of your card or on our website and we'll freeze the card for you.")


def today() -> dt.date:
    """The bank's today (tests replace it)."""
    return dt.date.today()


def reset(form: str) -> List[EventType]:
    return [SlotSet(name, None) for name in FORM_SLOTS[form]]


def stop_requested(tracker: Tracker) -> bool:
    return bool(STOP.match(latest_text(tracker).strip()))


def sign_in_required(dispatcher: CollectingDispatcher, form: str) -> None:
    """Tell a customer who is not identified how to do this, without touching any account."""
    text = SIGN_IN_REQUIRED + (LOST_CARD_WITHOUT_APP if form == "lost_card_form" else "")
    dispatcher.utter_message(text=text, buttons=[HUMAN_BUTTON])


# -- the common validation logic --------------------------------------------------------


class BankFormValidation(FormValidationAction):
    """A form's validation, plus digression, stop and handoff handling (see module doc)."""

    trigger_intents: Sequence[str] = ()

    @abstractmethod
    async def understood(self, tracker: Tracker) -> bool:
        """Whether the latest message has something this form can use."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        if customer_id(tracker) is None:
            # Before anything reads the database: end the form (its submit action then
            # does nothing) and say how to sign in. Runs at activation and at every turn.
            sign_in_required(dispatcher, self.form_name())
            return reset(self.form_name()) + [SlotSet(REQUESTED_SLOT, None)]
        requested = tracker.get_slot(REQUESTED_SLOT)
        candidates = tracker.slots_to_validate()
        if requested not in self.domain_slots(domain):
            # Activation: Rasa offers every required slot that has a value, but a value
            # left by an earlier, abandoned form is not an answer to this one.
            stale = [name for name in candidates if not set_this_turn(tracker, name, self.form_name())]
            if stale:
                tracker.events = drop_trailing_slots(tracker.events, stale)
                for name in stale:
                    tracker.slots[name] = None
                return [SlotSet(name, None) for name in stale] + await super().run(dispatcher, tracker, domain)
        elif candidates:  # a turn of the form, right after a user message
            undo = [SlotSet(name, slot_before_turn(tracker, name)) for name in candidates if name != REQUESTED_SLOT]
            if not latest_text(tracker).strip():
                # A blank message answers nothing, least of all a confirmation (the NLU
                # reads "" as affirm, which cancelled a card): the form asks again.
                return undo
            intent = latest_intent(tracker)
            if intent == "request_human":
                return undo + [ActionExecutionRejected(self.form_name())]
            if stop_requested(tracker):
                return reset(self.form_name()) + [SlotSet(REQUESTED_SLOT, None)]
            if intent not in ANSWER_INTENTS and intent not in self.trigger_intents and not await self.understood(tracker):
                logger.debug("%s: '%s' (%s) is a digression", self.form_name(), latest_text(tracker), intent)
                return undo + [ActionExecutionRejected(self.form_name())]
        return await super().run(dispatcher, tracker, domain)

