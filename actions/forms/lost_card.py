"""The lost, stolen or compromised card form: identify the card (buttons, or "is it your
card ending 3377?"), freeze it at once, cancel and replace it on request."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.forms.base import HUMAN_BUTTON, BankFormValidation, reset
from actions.parsing import parse_last4, yes_no
from actions.tracker import customer_id, identified, latest_intent, latest_text, slot_before_turn
from assistant import bank


def card_buttons(cards: Sequence[bank.Card]) -> List[Dict[str, str]]:
    return [{"title": card.label[0].upper() + card.label[1:],
             "payload": f'/inform{{"card_last4": "{card.last4}"}}'} for card in cards]


class ValidateLostCardForm(BankFormValidation):
    trigger_intents = ("lost_or_stolen_card", "compromised_card")

    def name(self) -> Text:
        return "validate_lost_card_form"

    async def understood(self, tracker: Tracker) -> bool:
        text = latest_text(tracker)
        return parse_last4(text) is not None or yes_no(text) is not None

    async def validate_card_last4(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        db = bank.get()
        who = identified(tracker)
        cards = await db.cards(who)
        text = latest_text(tracker)
        if value == "yes" or (value != "no" and parse_last4(text) is None and yes_no(text) is True):
            if len(cards) != 1:
                dispatcher.utter_message(text="Which card is it? Please choose it below or type its last 4 digits.")
                return {"card_last4": None}
            last4 = cards[0].last4
        elif value == "no" or yes_no(text) is False:
            return {"card_last4": None}  # action_ask_card_last4 asks for the digits
        else:
            last4 = parse_last4(text) or parse_last4(str(value))
            if last4 is None:
                dispatcher.utter_message(text="Sorry, I need the last 4 digits of the card, for example 4821.")
                return {"card_last4": None}
        card = await db.card(who, last4)
        if card is None:
            dispatcher.utter_message(text=f"I can't find a card ending {last4} on your account.")
            return {"card_last4": None}
        if card.status == bank.CANCELLED:
            dispatcher.utter_message(
                text=f"Your card ending {last4} is already cancelled, so no one can use it"
                + (" and its replacement has been ordered." if card.replacement_ordered else ".")
            )
            return {"card_last4": None}
        frozen = await db.freeze_card(who, last4)
        assert frozen is not None
        what = card.label
        if card.status == bank.FROZEN:
            message = f"Your {what} is already frozen, so no one can use it."
        else:
            message = f"I've frozen your {what}, so no one can use it."
        result: Dict[Text, Any] = {"card_last4": last4}
        before = slot_before_turn(tracker, "card_last4")
        if before and before != last4:
            message += (f" Your card ending {before} stays frozen too; if you still have it, you can "
                        "unfreeze it in the Lakeside app under Card > Freeze.")
            result["replace_card"] = None
        dispatcher.utter_message(text=message)
        return result

    async def validate_replace_card(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                    domain: DomainDict) -> Dict[Text, Any]:
        if slot_before_turn(tracker, "card_last4") not in (None, tracker.get_slot("card_last4")):
            return {"replace_card": None}  # the card was corrected: ask again about the new one
        if isinstance(value, bool):
            return {"replace_card": value}
        answer = yes_no(latest_text(tracker))
        if answer is None:
            dispatcher.utter_message(text="Sorry, I didn't catch that. Please answer yes or no.")
        return {"replace_card": answer}


class ActionAskCardLast4(Action):
    def name(self) -> Text:
        return "action_ask_card_last4"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        who = customer_id(tracker)
        if who is None:
            return []  # the form's validation has ended the form and said how to sign in
        cards = await bank.get().cards(who)
        if not cards:
            dispatcher.utter_message(
                text="I can't find a card on your account that I could freeze. A person from our team can help.",
                buttons=[HUMAN_BUTTON],
            )
        elif len(cards) == 1 and latest_intent(tracker) != "deny" and yes_no(latest_text(tracker)) is not False:
            dispatcher.utter_message(
                text=f"I can freeze it for you now. Is it your {cards[0].label}?",
                buttons=[{"title": "Yes, that one", "payload": "/affirm"},
                         {"title": "No, another card", "payload": "/deny"}],
            )
        elif len(cards) == 1:
            dispatcher.utter_message(
                text=f"The only card on your account I can freeze is your {cards[0].label}. "
                "If it's another card, please type its last 4 digits, or talk to a person.",
                buttons=[*card_buttons(cards), HUMAN_BUTTON],
            )
        else:
            dispatcher.utter_message(
                text="I can freeze it for you now. Which card is it? Choose it below or type its last 4 digits.",
                buttons=card_buttons(cards),
            )
        return []


class ActionSubmitLostCard(Action):
    def name(self) -> Text:
        return "action_submit_lost_card"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        who = customer_id(tracker)
        if who is None:  # the form's validation ended the form and said how to sign in
            return reset("lost_card_form")
        last4, replace = tracker.get_slot("card_last4"), tracker.get_slot("replace_card")
        if not last4 or replace is None:
            dispatcher.utter_message(response="utter_form_stopped")
            return reset("lost_card_form")
        db = bank.get()
        card = await db.card(who, last4)
        if replace:
            card = await db.cancel_and_replace(who, last4)
        if card is None:
            dispatcher.utter_message(text=f"I can't find a card ending {last4} on your account anymore.",
                                     buttons=[HUMAN_BUTTON])
        elif replace and card.kind == "virtual":
            dispatcher.utter_message(
                text=f"Done: your virtual card ending {last4} is cancelled for good. You can create a new "
                "virtual card straight away, free, in the Lakeside app under Card > Virtual cards.",
            )
        elif replace:
            dispatcher.utter_message(
                text=f"Done: your card ending {last4} is cancelled for good, and a free replacement is on its way "
                "to the address in your profile. It arrives in 3–5 working days in the UK (up to 10 working days "
                "elsewhere in the EEA); until then you can pay online with a free virtual card (Card > Virtual "
                "cards). If you've seen payments you didn't make, I can help you dispute them.",
                buttons=[{"title": "Dispute a payment", "payload": "/card_payment_not_recognised"}, HUMAN_BUTTON],
            )
        else:
            dispatcher.utter_message(
                text=f"OK, your card ending {last4} stays frozen. If it turns up, you can unfreeze it in the "
                "Lakeside app under Card > Freeze; if it's gone for good, just tell me and I'll cancel it and "
                "order a free replacement.",
            )
        return reset("lost_card_form")

