"""The disputed card payment form: the payment is found (buttons, amount, shop, date or
reference), confirmed and disputed, with a reference."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Dict, List, Sequence, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.forms import base
from actions.forms.base import HUMAN_BUTTON, BankFormValidation, reset
from actions.parsing import format_date, format_money, has_amount, has_date, parse_amount, parse_date, yes_no
from actions.tracker import REQUESTED_SLOT, customer_id, identified, latest_text, slot_before_turn
from assistant import bank

DISPUTE_WINDOW_DAYS = 120  # knowledge/refunds-and-disputes.md


def _payment_title(t: bank.Transaction, now: dt.date) -> str:
    return f"{format_money(t.amount_minor, t.currency)} · {t.counterparty} · {t.date.day} {t.date.strftime('%b')}"


def _payment_buttons(payments: Sequence[bank.Transaction], now: dt.date) -> List[Dict[str, str]]:
    return [{"title": _payment_title(t, now), "payload": f'/inform{{"payment_id": "{t.reference}"}}'}
            for t in payments]


def _merchant_matches(text: str, merchant: str) -> bool:
    words = {w for w in re.findall(r"[a-z0-9&']+", text.lower()) if len(w) >= 3}
    names = {w for w in re.findall(r"[a-z0-9&']+", merchant.lower()) if len(w) >= 3}
    return bool(words & names)


async def recent_card_payments(who: str, now: dt.date) -> List[bank.Transaction]:
    return await bank.get().transactions(who, [bank.CARD_PAYMENT],
                                         since=now - dt.timedelta(days=DISPUTE_WINDOW_DAYS))


class ValidateDisputeForm(BankFormValidation):
    trigger_intents = ("card_payment_not_recognised",)

    def name(self) -> Text:
        return "validate_dispute_form"

    async def understood(self, tracker: Tracker) -> bool:
        text = latest_text(tracker)
        if has_amount(text) or has_date(text) or yes_no(text) is not None or re.search(r"TX-\d+-\d+", text):
            return True
        payments = await recent_card_payments(identified(tracker), base.today())
        return any(_merchant_matches(text, t.counterparty) for t in payments)

    async def validate_payment_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        now = base.today()
        who = identified(tracker)
        text = latest_text(tracker)
        before = slot_before_turn(tracker, "payment_id")
        payments = await recent_card_payments(who, now)
        by_ref = {t.reference: t for t in payments}
        reference = value if isinstance(value, str) and value in by_ref else None
        if reference is None:
            match = re.search(r"TX-\d+-\d+", text)
            reference = match.group(0) if match and match.group(0) in by_ref else None
        if reference is None:
            amount = parse_amount(text)
            day = parse_date(text, now)
            named = [t for t in payments if _merchant_matches(text, t.counterparty)]
            if amount is None and day is None and not named:
                if tracker.get_slot(REQUESTED_SLOT) == "payment_id" and yes_no(text) is False:
                    return {"payment_id": None, "payment_candidates": None, REQUESTED_SLOT: None}
                if tracker.get_slot(REQUESTED_SLOT) == "payment_id":
                    dispatcher.utter_message(text="Sorry, I couldn't tell which payment you mean.")
                return {"payment_id": before}
            matches = named or payments
            if amount is not None:
                matches = [t for t in matches if t.amount_minor == amount[0]]
            if day is not None:
                matches = [t for t in matches if t.date == day]
            described = " ".join(filter(None, [
                f"of {format_money(amount[0], amount[1])}" if amount else "",
                f"at {named[0].counterparty}" if named else "",
                f"on {format_date(day, now)}" if day else "",
            ]))
            if not matches:
                dispatcher.utter_message(text=f"I couldn't find a card payment {described} in the last "
                                              f"{DISPUTE_WINDOW_DAYS} days.")
                return {"payment_id": None, "payment_candidates": None, "payment_confirmed": None}
            if len(matches) > 1:
                dispatcher.utter_message(text=f"I found {len(matches)} card payments {described}. "
                                              "Which one is it?")
                return {"payment_id": None, "payment_candidates": [t.reference for t in matches[:5]],
                        "payment_confirmed": None}
            reference = matches[0].reference
        result: Dict[Text, Any] = {"payment_id": reference, "payment_candidates": None}
        if before and before != reference:
            result["payment_confirmed"] = None
        return result

    async def validate_payment_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                         domain: DomainDict) -> Dict[Text, Any]:
        if tracker.get_slot("payment_id") != slot_before_turn(tracker, "payment_id"):
            return {"payment_confirmed": None}  # another payment was named: confirm that one
        answer = value if isinstance(value, bool) else yes_no(latest_text(tracker))
        if answer is None:
            dispatcher.utter_message(text="Sorry, I didn't catch that. Please answer yes or no.")
            return {"payment_confirmed": None}
        if answer is False:
            dispatcher.utter_message(text="OK, let's find the right one.")
            return {"payment_confirmed": None, "payment_id": None, "payment_candidates": None}
        return {"payment_confirmed": True}


class ActionAskPaymentId(Action):
    def name(self) -> Text:
        return "action_ask_payment_id"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        who = customer_id(tracker)
        if who is None:
            return []  # the form's validation has ended the form and said how to sign in
        now = base.today()
        payments = await recent_card_payments(who, now)
        candidates = tracker.get_slot("payment_candidates") or []
        if candidates:
            chosen = [t for t in payments if t.reference in candidates]
            dispatcher.utter_message(text="Please choose the payment:", buttons=_payment_buttons(chosen, now))
        elif payments:
            dispatcher.utter_message(
                text="Which card payment don't you recognise? Choose it below, or tell me its amount, "
                     "the shop's name or the date.",
                buttons=_payment_buttons(payments[:5], now),
            )
        else:
            dispatcher.utter_message(text=f"I can't see any card payments in the last {DISPUTE_WINDOW_DAYS} days "
                                          "on your account. A person from our team can help.",
                                     buttons=[HUMAN_BUTTON])
        return []


class ActionAskPaymentConfirmed(Action):
    def name(self) -> Text:
        return "action_ask_payment_confirmed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        who = customer_id(tracker)
        if who is None:
            return []  # the form's validation has ended the form and said how to sign in
        now = base.today()
        payment = await bank.get().transaction(who, tracker.get_slot("payment_id") or "")
        if payment is None:
            dispatcher.utter_message(text="Shall I open a dispute for this payment?")
            return []
        text = (f"Just to check: {format_money(payment.amount_minor, payment.currency)} at {payment.counterparty} "
                f"on {format_date(payment.date, now)}, paid with your card ending {payment.card_last4}. ")
        if payment.status == bank.PENDING:
            text += ("It's still pending: if the merchant doesn't complete it, the money comes back within 7 days "
                     "on its own. ")
        dispatcher.utter_message(
            text=text + "Shall I open a dispute for it?",
            buttons=[{"title": "Yes, dispute it", "payload": "/affirm"},
                     {"title": "No, another payment", "payload": "/deny"}],
        )
        return []


class ActionSubmitDispute(Action):
    def name(self) -> Text:
        return "action_submit_dispute"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        who = customer_id(tracker)
        if who is None:  # the form's validation ended the form and said how to sign in
            return reset("dispute_form")
        reference = tracker.get_slot("payment_id")
        if not reference or tracker.get_slot("payment_confirmed") is not True:
            dispatcher.utter_message(response="utter_form_stopped")
            return reset("dispute_form")
        db = bank.get()
        payment = await db.transaction(who, reference)
        if payment is None:
            dispatcher.utter_message(text="I can't find that payment anymore.", buttons=[HUMAN_BUTTON])
            return reset("dispute_form")
        dispute, created = await db.open_dispute(who, reference, "card payment not recognised", tracker.sender_id)
        money = format_money(payment.amount_minor, payment.currency)
        if not created:
            dispatcher.utter_message(text=f"There's already an open dispute for the {money} payment at "
                                          f"{payment.counterparty}: its reference is {dispute.reference}. "
                                          "We'll keep you updated in the Lakeside app.")
            return reset("dispute_form")
        dispatcher.utter_message(
            text=f"I've opened a dispute for the {money} payment at {payment.counterparty}. Its reference is "
                 f"{dispute.reference}. Our team will look into it and keep you updated in the Lakeside app. "
                 "As someone may have your card details, please don't use that card again: I can freeze it for "
                 "you now and order a free replacement.",
            buttons=[{"title": "Freeze my card", "payload": "/compromised_card"}, HUMAN_BUTTON],
        )
        return reset("dispute_form")


