"""The forms that act on the customer's account: lost card, transfer status, disputes.

Each form has a validation action (FormValidationAction) that reads what the customer
typed (actions.parsing), checks it against the bank database (assistant.bank) and
answers in plain words; custom `action_ask_*` questions where the choices come from the
database (the customer's cards, their card payments); and a submit action run by a
rule when the form is complete (data/rules/forms.yml).

Robustness in a form turn, where the NLU often misclassifies short answers:
- slots are filled from entities (RegexEntityExtractor) in any turn of the form, so a
  correction such as "sorry, it was 250 not 150" re-fills the amount while the form
  asks something else; and from the whole text when it answers the requested slot;
- the validators read values from the whole message (the last one not negated);
- a message that answers nothing and is classified as another question (a banking
  intent, out_of_scope, small talk) is a digression: the validation action rejects
  the form (ActionExecutionRejected), the question gets its usual answer, and Rasa
  returns to the form, which asks again;
- "stop", "cancel", "never mind" end the form without changing anything;
- a blank message fills nothing (the NLU takes "" for affirm): the form asks again;
- request_human always rejects the form, so the handoff rule runs (actions/handoff.py);
- at activation only values from the triggering message count: a slot left by a form
  that was abandoned (for a digression into another form) is cleared, not reused.
Submit actions clear the form's slots, so the next form starts empty.

Whose account: `customer_id(tracker)`, the identity the channel verified for the latest
message (addons/channels.py: a JWT claim on socket.io, the REST back end's
`metadata.customer_id` behind REST_CHANNEL_TOKEN), or None. A customer who is not
identified gets SIGN_IN_REQUIRED from the form's validation, at activation or at any
later turn, and the form ends there: no account is read or changed, and the ask and
submit actions, should they run, read nothing either (docs/security.md).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from abc import abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActionExecutionRejected, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from assistant import bank, config
from actions.parsing import (
    format_date,
    format_money,
    has_amount,
    has_date,
    parse_amount,
    parse_date,
    parse_last4,
    to_minor,
    yes_no,
)

logger = logging.getLogger(__name__)

REQUESTED_SLOT = "requested_slot"
HUMAN_BUTTON = {"title": "Talk to a person", "payload": "/request_human"}
# Intents a form answer is often classified as; anything else may be a digression.
ANSWER_INTENTS = {"inform", "affirm", "deny", "nlu_fallback"}
STOP = re.compile(r"^(?:stop|cancel|quit|exit|never ?mind|forget (?:it|about it)|leave it|no thanks|"
                  r"i don'?t want to|not now)[.!]*$", re.IGNORECASE)
DISPUTE_WINDOW_DAYS = 120  # knowledge/refunds-and-disputes.md
# What an account action answers a customer who is not identified (see customer_id).
SIGN_IN_REQUIRED = ("To do that I need to know it's you. Please sign in to the Lakeside app or website and chat "
                    "with us from there, and I'll help you straight away.")
# What the customer can do alone meanwhile, in the words of knowledge/lost-stolen-compromised-card.md.
LOST_CARD_WITHOUT_APP = (" Meanwhile you can freeze it yourself in the Lakeside app under Card > Freeze, or cancel it "
                         "under Card > Report lost or stolen. If you can't get into the app, call the number on the "
                         "back of your card or on our website and we'll freeze the card for you.")
FORM_SLOTS = {
    "lost_card_form": ["card_last4", "replace_card"],
    "transfer_form": ["transfer_amount", "transfer_date", "transfer_direction"],
    "dispute_form": ["payment_id", "payment_candidates", "payment_confirmed"],
}


def today() -> dt.date:
    """The bank's today (tests replace it)."""
    return dt.date.today()


# -- tracker helpers ---------------------------------------------------------------------


def customer_id(tracker: Tracker) -> Optional[str]:
    """The customer the channel verified for the latest user message, or None.

    Only `metadata["verified_customer_id"]` (config.VERIFIED_CUSTOMER_KEY) counts: the
    channels (addons/channels.py) remove any value a client sends under that key and set
    it only for an authenticated caller. A client's own `metadata.customer_id` means
    nothing here, and an earlier message's identity does not carry over to a later one
    (each message of an authenticated caller carries it again).
    """
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            value = (event.get("metadata") or {}).get(config.VERIFIED_CUSTOMER_KEY)
            return value.strip() if isinstance(value, str) and value.strip() else None
    return None


def identified(tracker: Tracker) -> str:
    """customer_id() where the action runs only for an identified customer (a form's
    validation checks first and ends the form otherwise)."""
    who = customer_id(tracker)
    if who is None:
        raise PermissionError("account action without a verified customer")
    return who


def latest_text(tracker: Tracker) -> str:
    return (tracker.latest_message or {}).get("text") or ""


def latest_intent(tracker: Tracker) -> Optional[str]:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def slot_before_turn(tracker: Tracker, name: str) -> Any:
    """The slot's value before the latest user message (what a correction corrects)."""
    events = tracker.events
    last_user = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=None)
    if last_user is None:
        return tracker.get_slot(name)
    value = None
    for event in events[:last_user]:
        if event.get("event") == "slot" and event.get("name") == name:
            value = event.get("value")
        elif event.get("event") in ("session_started", "restart"):
            value = None
    return value


def set_this_turn(tracker: Tracker, name: str, form: str) -> bool:
    """Whether a user message of this turn set the slot (before the form ran)."""
    events = tracker.events
    last_user = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=-1)
    for event in events[last_user + 1:]:
        if event.get("event") == "action" and event.get("name") == form:
            return False
        if event.get("event") == "slot" and event.get("name") == name:
            return True
    return False


def drop_trailing_slots(events: List[Dict[str, Any]], names: Sequence[str]) -> List[Dict[str, Any]]:
    """The events without the trailing slot candidates of these names."""
    kept: List[Dict[str, Any]] = []
    trailing = True
    for event in reversed(events):
        if trailing and event.get("event") == "slot":
            if event.get("name") not in names:
                kept.append(event)
            continue
        trailing = False
        kept.append(event)
    return kept[::-1]


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


# -- lost or stolen card --------------------------------------------------------------------


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


# -- transfer status ------------------------------------------------------------------------


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
        now = today()
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
        now = today()
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


# -- disputed card payment ------------------------------------------------------------------


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
        payments = await recent_card_payments(identified(tracker), today())
        return any(_merchant_matches(text, t.counterparty) for t in payments)

    async def validate_payment_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: DomainDict) -> Dict[Text, Any]:
        now = today()
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
        now = today()
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
        now = today()
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


# The intents whose rule starts a form after action_llm_reply's answer (data/rules/forms.yml).
FORM_INTENTS = frozenset(intent for form in (ValidateLostCardForm, ValidateTransferForm, ValidateDisputeForm)
                         for intent in form.trigger_intents)
