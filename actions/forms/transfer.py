"""The transfer form: a transfer that hasn't arrived (sent or expected) is looked up by
amount and date, and its status explained in the bank's words."""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.forms import base
from actions.forms.base import HUMAN_BUTTON, BankFormValidation, reset
from actions.parsing import format_date, format_money, has_amount, has_date, parse_amount, parse_date, to_minor, yes_no
from actions.tracker import REQUESTED_SLOT, customer_id, latest_text, slot_before_turn
from assistant import bank


class ValidateTransferForm(BankFormValidation):
    trigger_intents = ("transfer_not_received_by_recipient", "pending_transfer",
                       "balance_not_updated_after_bank_transfer")

    def name(self) -> Text:
        return "validate_transfer_form"

    async def understood(self, tracker: Tracker) -> bool:
        text = latest_text(tracker)
        return has_amount(text) or has_date(text)

    async def validate_transfer_amount(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                       domain: DomainDict) -> Dict[Text, Any]:
        text = latest_text(tracker)
        parsed = parse_amount(text) or parse_amount(str(value if not isinstance(value, list) else value[-1]))
        if parsed is None:
            if tracker.get_slot(REQUESTED_SLOT) == "transfer_amount" and yes_no(text) is False:
                return {"transfer_amount": None, REQUESTED_SLOT: None}  # "no": stop
            if not has_date(text):
                dispatcher.utter_message(text="Sorry, I didn't catch the amount. Please type it in numbers, "
                                              "for example £250 or 45.99.")
            return {"transfer_amount": slot_before_turn(tracker, "transfer_amount")}
        amount = f"{parsed[0] / 100:.2f}"
        before = slot_before_turn(tracker, "transfer_amount")
        if before and before != amount:
            dispatcher.utter_message(text=f"Got it: {format_money(parsed[0], parsed[1])}, "
                                          f"not {format_money(to_minor(before)[0], parsed[1])}.")
        return {"transfer_amount": amount}

    async def validate_transfer_date(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                     domain: DomainDict) -> Dict[Text, Any]:
        text = latest_text(tracker)
        now = base.today()
        day = parse_date(text, now) or parse_date(str(value if not isinstance(value, list) else value[-1]), now)
        if day is None:
            if tracker.get_slot(REQUESTED_SLOT) == "transfer_date" and yes_no(text) is False:
                return {"transfer_date": None, REQUESTED_SLOT: None}
            if not has_amount(text):
                dispatcher.utter_message(text="Sorry, I didn't catch the date. You can type it like 3 March, "
                                              "03/03 or \"yesterday\".")
            return {"transfer_date": slot_before_turn(tracker, "transfer_date")}
        before = slot_before_turn(tracker, "transfer_date")
        if before and before != day.isoformat():
            dispatcher.utter_message(text=f"Got it: {format_date(day, now)}.")
        return {"transfer_date": day.isoformat()}


def _transfer_status_text(t: bank.Transaction, now: dt.date) -> str:
    money = format_money(t.amount_minor, t.currency)
    when = format_date(t.date, now)
    if t.kind == bank.TRANSFER_IN:
        head = f"The payment of {money} from {t.counterparty}, sent {when},"
        if t.status == bank.COMPLETED:
            return (f"{head} arrived on {format_date(t.status_date or t.date, now)} and is in your balance. "
                    "Tap it in your transaction list in the Lakeside app to see its details.")
        if t.status == bank.PENDING:
            timing = ("Payments from abroad take 1–3 working days" if t.international
                      else "Payments from UK accounts arrive within 1 working day, usually within minutes")
            return f"{head} is on its way: it's {t.detail or 'being processed'}. {timing}."
        return (f"{head} didn't arrive: {t.detail or 'the sending bank stopped it'}. Please ask the sender to "
                "check the details shown under Home > Account details in the Lakeside app and send it again.")
    head = f"Your transfer of {money} to {t.counterparty}, sent {when},"
    if t.status == bank.COMPLETED:
        timing = ("International transfers reach the recipient's bank within 1–3 working days" if t.international
                  else "UK transfers reach the recipient's bank within 1 working day")
        return (f"{head} has been completed, so the money has left Lakeside. {timing}, though their bank may take "
                "a little longer to show it. You can send them proof of payment: tap the transfer under Payments "
                f"and choose Share receipt (reference {t.reference}).")
    if t.status == bank.PENDING:
        timing = ("International transfers take 1–3 working days" if t.international
                  else "Held UK transfers are released within 1 working day, and you don't need to do anything")
        return (f"{head} is pending: it's {t.detail or 'being processed'}. {timing}. While it shows as Pending, "
                "you can still cancel it under Payments in the Lakeside app.")
    if t.status == bank.FAILED:
        back = "within 5 working days" if t.international else "straight away"
        return (f"{head} failed: {t.detail or 'the receiving bank rejected it'}. The money came back to your "
                f"Lakeside balance {back}. Please check the details with the recipient before sending it again.")
    return (f"{head} came back on {format_date(t.status_date or t.date, now)}: {t.detail or 'the receiving bank returned it'}. "
            "The money is back in your Lakeside balance; please check the details with the recipient before "
            "sending it again.")


class ActionSubmitTransfer(Action):
    def name(self) -> Text:
        return "action_submit_transfer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        who = customer_id(tracker)
        if who is None:  # the form's validation ended the form and said how to sign in
            return reset("transfer_form")
        amount, day = tracker.get_slot("transfer_amount"), tracker.get_slot("transfer_date")
        if not amount or not day:
            dispatcher.utter_message(response="utter_form_stopped")
            return reset("transfer_form")
        direction = tracker.get_slot("transfer_direction")
        kinds = {"out": [bank.TRANSFER_OUT], "in": [bank.TRANSFER_IN]}.get(direction,
                                                                          [bank.TRANSFER_OUT, bank.TRANSFER_IN])
        minor = to_minor(amount)[0]
        on = dt.date.fromisoformat(day)
        now = base.today()
        db = bank.get()
        found = await db.transactions(who, kinds, amount_minor=minor, on=on)
        if found:
            for transfer in found:
                dispatcher.utter_message(text=_transfer_status_text(transfer, now))
            return reset("transfer_form")
        what = "a payment to you" if direction == "in" else "a transfer"
        nearby = [t for t in await db.transactions(who, kinds, since=on - dt.timedelta(days=3))
                  if abs((t.date - on).days) <= 3 and (t.amount_minor == minor or t.date == on)][:3]
        text = f"I couldn't find {what} of {format_money(minor)} on {format_date(on, now)}."
        if nearby:
            arrow = "from" if direction == "in" else "to"
            text += " Around that date I can see: " + "; ".join(
                f"{format_money(t.amount_minor, t.currency)} {('from' if t.kind == bank.TRANSFER_IN else arrow)} "
                f"{t.counterparty} on {format_date(t.date, now)} ({t.status})" for t in nearby
            ) + "."
        text += " If a transfer is missing, a person from our team can look into it."
        dispatcher.utter_message(
            text=text,
            buttons=[{"title": "Check another transfer",
                      "payload": "/balance_not_updated_after_bank_transfer" if direction == "in"
                      else "/pending_transfer"},
                     HUMAN_BUTTON],
        )
        return reset("transfer_form")

