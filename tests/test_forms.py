"""The forms' actions (actions/forms/) against the demo bank database.

Trackers are built from Rasa's own events the way Rasa builds the tracker it sends to
the action server (DialogueStateTracker -> current_state -> rasa_sdk Tracker): a form
turn is the user message, the slot candidates of action_extract_slots, the form's
requested slot, the form's ActionExecuted and the candidates again. Each test asserts
the exact events an action returns, what it says, and what changed in the database.
The database tests run on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
import yaml
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted as RasaActionExecuted
from rasa.shared.core.events import ActiveLoop as RasaActiveLoop
from rasa.shared.core.events import SlotSet as RasaSlotSet
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity
from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecutionRejected, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import forms, parsing
from assistant import bank, config
from ops import settings
from tests.conftest import bank_rows

TODAY = dt.date(2026, 3, 11)  # a Wednesday: yesterday is Tuesday 10 March
DOMAIN = Domain.load(str(settings.ROOT / "domain"))
DOMAIN_DICT = DOMAIN.as_dict()
HUMAN = {"title": "Talk to a person", "payload": "/request_human"}
# The customer of a conversation unless a test says otherwise: each message carries the
# identity the channel verified (addons/channels.py), as an authenticated caller's do.
DEMO = "C1001"


@pytest.fixture
def db_url(bank_url, monkeypatch):
    """The demo customers in a fresh database that the actions use, dated around TODAY."""
    bank.seed(bank_url, today=TODAY)
    monkeypatch.setenv("BANK_DB_URL", bank_url)
    monkeypatch.setattr(forms.base, "today", lambda: TODAY)
    return bank_url


def run(action, tracker):
    """Run one action as the action server would; (events, messages) with the messages' set fields."""
    async def main():
        db = bank.Bank()
        bank.use(db)
        try:
            dispatcher = CollectingDispatcher()
            events = await action.run(dispatcher, tracker, DOMAIN_DICT)
            return events, [{k: v for k, v in m.items() if v not in (None, [], {})} for m in dispatcher.messages]
        finally:
            bank.use(None)
            await db.close()

    return asyncio.run(main())


def query(scenario):
    async def main():
        db = bank.Bank()
        try:
            return await scenario(db)
        finally:
            await db.close()

    return asyncio.run(main())


def user(text, intent, entities=(), customer=DEMO, metadata=None):
    """A user message; `customer` is the identity the channel verified (None: nobody)."""
    verified = {config.VERIFIED_CUSTOMER_KEY: customer} if customer else {}
    return UserUttered(text, {"name": intent, "confidence": 0.9},
                       [{"entity": e, "value": v, "start": 0, "end": 0} for e, v in entities],
                       metadata={**(metadata or {}), **verified}, input_channel="rest")


def sdk_tracker(events) -> Tracker:
    state = DialogueStateTracker.from_events("test-user", events, slots=DOMAIN.slots).current_state(
        EventVerbosity.ALL)
    return Tracker.from_dict(state)


def in_form(form, requested, slots=None, customer=DEMO, trigger="lost_or_stolen_card"):
    """The events of a conversation whose form is active and asking for `requested`."""
    return [
        RasaActionExecuted("action_listen"), user("trigger", trigger, customer=customer),
        RasaActionExecuted(form), RasaActiveLoop(form),
        *[RasaSlotSet(k, v) for k, v in (slots or {}).items()],
        RasaSlotSet("requested_slot", requested), RasaActionExecuted("action_listen"),
    ]


def form_turn(form, requested, message, candidates, slots=None, customer=DEMO, trigger="lost_or_stolen_card"):
    """The tracker the form sends to validate_<form> after the user's `message`."""
    events = in_form(form, requested, slots, customer, trigger) + [message]
    events += [RasaSlotSet(k, v) for k, v in candidates.items()]  # action_extract_slots
    events += [RasaSlotSet("requested_slot", requested), RasaActionExecuted(form)]
    events += [RasaSlotSet(k, v) for k, v in candidates.items()]  # the candidates to validate
    return sdk_tracker(events)


def activation(form, message, fresh, stale=None):
    """The tracker at the form's activation: `fresh` slots came from this message."""
    stale = stale or {}
    events = [RasaActionExecuted("action_listen"), user("earlier", "inform"),
              *[RasaSlotSet(k, v) for k, v in stale.items()], RasaActionExecuted("action_listen"), message]
    events += [RasaSlotSet(k, v) for k, v in fresh.items()]
    events += [RasaActiveLoop(form), RasaSlotSet("requested_slot", None), RasaActionExecuted(form)]
    events += [RasaSlotSet(k, v) for k, v in {**stale, **fresh}.items()]
    return sdk_tracker(events)


def after_form(form, slots, customer=DEMO):
    """The tracker when the form has finished and its submit action runs."""
    events = in_form(form, None, slots, customer) + [RasaActiveLoop(None), RasaActionExecuted(form)]
    return sdk_tracker(events)


def card(url, customer, last4):
    return query(lambda db: db.card(customer, last4))


# -- the entity patterns ----------------------------------------------------------------------


def test_nlu_patterns_are_the_parsers_patterns():
    data = yaml.safe_load((settings.ROOT / "data" / "nlu" / "forms.yml").read_text())
    regexes = {block["regex"]: [line[2:] for line in block["examples"].splitlines() if line.startswith("- ")]
               for block in data["nlu"] if "regex" in block}
    assert regexes == {"amount": parsing.AMOUNT_PATTERNS, "date": [parsing.DATE_PATTERN],
                       "card_last4": parsing.CARD_LAST4_PATTERNS}


@pytest.mark.parametrize("text, amounts, dates, cards", [
    ("sorry, it was 250 not 150", ["250", "150"], [], []),
    ("I sent £1,200.50 to Hans on 3 March", ["£1,200.50"], ["3 March"], []),
    ("I lost my card ending in 4821", [], [], ["4821"]),
    ("4821", ["4821"], [], ["4821"]),
    ("it was yesterday, 45.99 at Fuel Stop", ["45.99"], ["yesterday"], []),
    ("on 2026-03-03 at 10:30, 5 working days ago", [], ["2026-03-03"], []),
    ("99p on the 3rd", ["99p"], ["on the 3rd"], []),
])
def test_entity_patterns_find_what_the_extractor_will(text, amounts, dates, cards):
    """What RegexEntityExtractor does with these patterns: case-insensitive re.finditer."""
    def found(patterns):
        return [m.group(0) for p in patterns for m in re.finditer(p, text, re.IGNORECASE)]

    assert (found(parsing.AMOUNT_PATTERNS), found([parsing.DATE_PATTERN]), found(parsing.CARD_LAST4_PATTERNS)) == (
        amounts, dates, cards)


@pytest.mark.parametrize("text, expected", [
    ("250", (25000, None)), ("£250", (25000, "GBP")), ("it was 250 not 150", (25000, None)),
    ("not 150 but 250", (25000, None)), ("250 instead of 150", (25000, None)), ("€1,200", (120000, "EUR")),
    ("99p", (99, "GBP")), ("80 pounds", (8000, "GBP")), ('/inform{"amount": "62.18"}', (6218, None)),
    ("on 3 March", None), ("two hundred", None),
])
def test_parse_amount(text, expected):
    assert parsing.parse_amount(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("yesterday", dt.date(2026, 3, 10)), ("today", TODAY), ("the day before yesterday", dt.date(2026, 3, 9)),
    ("3 days ago", dt.date(2026, 3, 8)), ("a week ago", dt.date(2026, 3, 4)), ("on Monday", dt.date(2026, 3, 9)),
    ("last Wednesday", dt.date(2026, 3, 4)), ("3rd of March", dt.date(2026, 3, 3)), ("March 3", dt.date(2026, 3, 3)),
    ("20 December", dt.date(2025, 12, 20)), ("03/03", dt.date(2026, 3, 3)), ("3.3.2025", dt.date(2025, 3, 3)),
    ("2026-02-28", dt.date(2026, 2, 28)), ("on the 20th", dt.date(2026, 2, 20)),
    ("it was yesterday not today", dt.date(2026, 3, 10)), ("30 February", None), ("soon", None),
])
def test_parse_date(text, expected):
    assert parsing.parse_date(text, TODAY) == expected


def test_parse_last4_yes_no_and_formats():
    assert parsing.parse_last4("the one ending 9034") == "9034"
    assert parsing.parse_last4("it's 3377") == "3377"
    assert parsing.parse_last4("£4,821") is None
    assert parsing.parse_last4("it was 9034 not 4821") == "9034"
    assert [parsing.yes_no(t) for t in ("yes please", "No, another card", "yep", "hmm")] == [True, False, True, None]
    assert parsing.format_money(120050, "EUR") == "€1,200.50" and parsing.format_money(500, "PLN") == "5.00 PLN"
    assert parsing.format_date(dt.date(2026, 3, 10), TODAY) == "yesterday (10 March)"
    assert parsing.format_date(dt.date(2026, 3, 6), TODAY) == "Friday 6 March"
    assert parsing.format_date(dt.date(2025, 3, 6), TODAY) == "6 March 2025"


def test_the_customer_is_only_the_one_the_channel_verified_for_the_latest_message():
    assert forms.customer_id(sdk_tracker([user("hi", "greet", customer="C1002")])) == "C1002"
    # no identity, no default customer
    assert forms.customer_id(sdk_tracker([])) is None
    assert forms.customer_id(sdk_tracker([user("hi", "greet", customer=None)])) is None
    # what a client says about itself means nothing, on any channel
    for channel in ("rest", "socketio"):
        claimed = UserUttered("hi", {"name": "greet"}, metadata={"customer_id": "C1002"}, input_channel=channel)
        assert forms.customer_id(sdk_tracker([claimed])) is None
    # an identity does not carry over to a later message that has none
    later = [user("hi", "greet", customer="C1002"), user("/inform", "inform", customer=None)]
    assert forms.customer_id(sdk_tracker(later)) is None
    assert forms.customer_id(sdk_tracker([*later, user("yes", "affirm", customer="C1003")])) == "C1003"
    assert config.VERIFIED_CUSTOMER_KEY == "verified_customer_id"


# -- a customer who is not identified --------------------------------------------------------------


SIGN_IN = forms.SIGN_IN_REQUIRED


@pytest.mark.parametrize("validation, message, fresh", [
    (forms.ValidateLostCardForm(), user("I lost my card ending 3377", "lost_or_stolen_card",
                                        [("card_last4", "3377")], customer=None, metadata={"customer_id": "C1002"}),
     {"card_last4": "3377"}),
    (forms.ValidateTransferForm(), user("I sent £250 yesterday", "transfer_not_received_by_recipient",
                                        [("amount", "£250"), ("date", "yesterday")], customer=None),
     {"transfer_direction": "out", "transfer_amount": "£250", "transfer_date": "yesterday"}),
    (forms.ValidateDisputeForm(), user("I don't know the £150 payment", "card_payment_not_recognised",
                                       [("amount", "£150")], customer=None), {"payment_id": "£150"}),
], ids=["lost card", "transfer", "dispute"])
def test_an_unidentified_customer_is_asked_to_sign_in_and_nothing_is_read_or_changed(
        db_url, validation, message, fresh):
    before = bank_rows(db_url)
    events, messages = run(validation, activation(validation.form_name(), message, fresh))
    form = validation.form_name()
    assert events == [SlotSet(name, None) for name in forms.FORM_SLOTS[form]] + [SlotSet("requested_slot", None)]
    [said] = messages
    assert said["text"].startswith(SIGN_IN) and said["buttons"] == [HUMAN]
    assert not re.search(r"\b\d{4}\b|TX-|£", said["text"])  # nothing about any account
    assert bank_rows(db_url) == before


def test_the_form_ends_when_a_message_comes_without_identity(db_url):
    """A conversation started by an identified customer; then a message nobody vouches for."""
    tracker = form_turn("lost_card_form", "card_last4", user("yes", "affirm", customer=None),
                        {"card_last4": "yes"}, customer="C1002")
    before = bank_rows(db_url)
    events, messages = run(forms.ValidateLostCardForm(), tracker)
    assert events == [SlotSet("card_last4", None), SlotSet("replace_card", None), SlotSet("requested_slot", None)]
    assert messages[0]["text"] == SIGN_IN + forms.LOST_CARD_WITHOUT_APP
    assert card(db_url, "C1002", "3377").status == "active" and bank_rows(db_url) == before


@pytest.mark.parametrize("action, form, slots", [
    (forms.ActionSubmitLostCard(), "lost_card_form", {"card_last4": "4821", "replace_card": True}),
    (forms.ActionSubmitTransfer(), "transfer_form",
     {"transfer_direction": "out", "transfer_amount": "250.00", "transfer_date": "2026-03-10"}),
    (forms.ActionSubmitDispute(), "dispute_form", {"payment_id": "TX-1001-03", "payment_confirmed": True}),
    (forms.ActionAskCardLast4(), "lost_card_form", {}),
    (forms.ActionAskPaymentId(), "dispute_form", {}),
    (forms.ActionAskPaymentConfirmed(), "dispute_form", {"payment_id": "TX-1001-03"}),
], ids=lambda v: v.name() if hasattr(v, "name") else None)
def test_without_identity_the_ask_and_submit_actions_read_and_change_nothing(db_url, action, form, slots):
    """They run after the validation ended the form (which said how to sign in): silent."""
    before = bank_rows(db_url)
    events, messages = run(action, after_form(form, slots, customer=None))
    assert messages == []
    assert events == ([] if action.name().startswith("action_ask") else forms.reset(form))
    assert bank_rows(db_url) == before


def test_the_validators_refuse_to_read_an_account_without_identity(db_url):
    tracker = sdk_tracker(in_form("dispute_form", "payment_id", customer=None))
    with pytest.raises(PermissionError):
        forms.identified(tracker)


# -- lost or stolen card -----------------------------------------------------------------------


def test_lost_card_named_when_reporting_is_frozen_at_activation(db_url):
    tracker = activation("lost_card_form", user("I lost my card ending 9034", "lost_or_stolen_card",
                                                [("card_last4", "9034")]), {"card_last4": "9034"})
    events, messages = run(forms.ValidateLostCardForm(), tracker)
    assert events == [SlotSet("card_last4", "9034")]
    assert messages == [{"text": "I've frozen your virtual card ending 9034, so no one can use it."}]
    assert card(db_url, "C1001", "9034").status == "frozen"


def test_a_card_left_by_an_abandoned_form_is_not_used_again(db_url):
    tracker = activation("lost_card_form", user("my card was stolen", "lost_or_stolen_card"), {},
                         stale={"card_last4": "4821", "replace_card": False})
    events, messages = run(forms.ValidateLostCardForm(), tracker)
    assert events == [SlotSet("card_last4", None), SlotSet("replace_card", None)]
    assert messages == [] and card(db_url, "C1001", "4821").status == "active"


def test_several_cards_are_offered_as_buttons(db_url):
    events, messages = run(forms.ActionAskCardLast4(), sdk_tracker(in_form("lost_card_form", "card_last4")))
    assert events == []
    assert messages == [{
        "text": "I can freeze it for you now. Which card is it? Choose it below or type its last 4 digits.",
        "buttons": [{"title": "Card ending 4821", "payload": '/inform{"card_last4": "4821"}'},
                    {"title": "Virtual card ending 9034", "payload": '/inform{"card_last4": "9034"}'}],
    }]


def test_the_only_active_card_is_confirmed_then_frozen(db_url):
    ask = sdk_tracker(in_form("lost_card_form", "card_last4", customer="C1002"))
    assert run(forms.ActionAskCardLast4(), ask)[1] == [{
        "text": "I can freeze it for you now. Is it your card ending 3377?",
        "buttons": [{"title": "Yes, that one", "payload": "/affirm"},
                    {"title": "No, another card", "payload": "/deny"}],
    }]
    tracker = form_turn("lost_card_form", "card_last4", user("yes", "affirm", customer="C1002"),
                        {"card_last4": "yes"}, customer="C1002")
    events, messages = run(forms.ValidateLostCardForm(), tracker)
    assert events == [SlotSet("card_last4", "3377")]
    assert messages == [{"text": "I've frozen your card ending 3377, so no one can use it."}]
    assert card(db_url, "C1002", "3377").status == "frozen"


def test_no_to_the_only_card_asks_for_the_digits(db_url):
    tracker = form_turn("lost_card_form", "card_last4", user("No, another card", "getting_spare_card", customer="C1002"),
                        {"card_last4": "No, another card"}, customer="C1002")
    assert run(forms.ValidateLostCardForm(), tracker) == ([SlotSet("card_last4", None)], [])
    events = in_form("lost_card_form", "card_last4", customer="C1002") + [user("no", "deny", customer="C1002")]
    assert run(forms.ActionAskCardLast4(), sdk_tracker(events))[1] == [{
        "text": "The only card on your account I can freeze is your card ending 3377. If it's another card, "
                "please type its last 4 digits, or talk to a person.",
        "buttons": [{"title": "Card ending 3377", "payload": '/inform{"card_last4": "3377"}'}, HUMAN],
    }]


@pytest.mark.parametrize("text, customer, message", [
    ("1234", "C1001", "I can't find a card ending 1234 on your account."),
    ("1187", "C1001", "Your card ending 1187 is already cancelled, so no one can use it and its replacement "
                      "has been ordered."),
    ("my cat ate it", "C1001", "Sorry, I need the last 4 digits of the card, for example 4821."),
])
def test_cards_that_cannot_be_frozen_are_explained(db_url, text, customer, message):
    tracker = form_turn("lost_card_form", "card_last4", user(text, "inform", customer=customer),
                        {"card_last4": text}, customer=customer)
    assert run(forms.ValidateLostCardForm(), tracker) == ([SlotSet("card_last4", None)], [{"text": message}])


def test_an_already_frozen_card_is_accepted(db_url):
    tracker = form_turn("lost_card_form", "card_last4",
                        user("5560", "inform", [("card_last4", "5560")], customer="C1003"),
                        {"card_last4": "5560"}, customer="C1003")
    assert run(forms.ValidateLostCardForm(), tracker) == (
        [SlotSet("card_last4", "5560")], [{"text": "Your card ending 5560 is already frozen, so no one can use it."}])


def test_correcting_the_card_freezes_the_new_one_and_asks_again(db_url):
    query(lambda db: db.freeze_card("C1001", "4821"))
    tracker = form_turn("lost_card_form", "replace_card",
                        user("sorry, it's the one ending 9034", "inform", [("card_last4", "9034")]),
                        {"card_last4": "9034"}, slots={"card_last4": "4821"})
    events, messages = run(forms.ValidateLostCardForm(), tracker)
    assert events == [SlotSet("card_last4", "9034"), SlotSet("replace_card", None)]
    assert messages == [{"text": "I've frozen your virtual card ending 9034, so no one can use it. Your card "
                                 "ending 4821 stays frozen too; if you still have it, you can unfreeze it in the "
                                 "Lakeside app under Card > Freeze."}]
    assert card(db_url, "C1001", "9034").status == "frozen"


@pytest.mark.parametrize("text, intent, candidate, expected, messages", [
    ("yes", "affirm", True, True, []),
    ("no", "deny", False, False, []),
    ("yes please send a new one", "order_physical_card", "yes please send a new one", True, []),
    ("maybe", "nlu_fallback", "maybe", None, [{"text": "Sorry, I didn't catch that. Please answer yes or no."}]),
])
def test_replacement_answer(db_url, text, intent, candidate, expected, messages):
    tracker = form_turn("lost_card_form", "replace_card", user(text, intent), {"replace_card": candidate},
                        slots={"card_last4": "4821"})
    assert run(forms.ValidateLostCardForm(), tracker) == ([SlotSet("replace_card", expected)], messages)


@pytest.mark.parametrize("form, validation, requested, slots", [
    ("lost_card_form", forms.ValidateLostCardForm, "replace_card", {"card_last4": "4821"}),
    ("dispute_form", forms.ValidateDisputeForm, "payment_confirmed", {"payment_id": "TX-1001-03"}),
])
@pytest.mark.parametrize("text", ["", "   "])
def test_a_blank_message_confirms_nothing(db_url, form, validation, requested, slots, text):
    """The NLU reads a blank message as affirm (found by tests/test_attacks.py: "" at
    "cancel it for good?" cancelled the card): the slot keeps its value, the form asks again."""
    before = bank_rows(db_url)
    tracker = form_turn(form, requested, user(text, "affirm"), {requested: True}, slots=slots,
                        trigger="card_payment_not_recognised" if form == "dispute_form" else "lost_or_stolen_card")
    assert run(validation(), tracker) == ([SlotSet(requested, None)], [])
    assert bank_rows(db_url) == before


def test_a_question_during_the_form_is_a_digression(db_url):
    tracker = form_turn("lost_card_form", "card_last4", user("how long does a new card take?", "card_delivery_estimate"),
                        {"card_last4": "how long does a new card take?"})
    assert run(forms.ValidateLostCardForm(), tracker) == (
        [SlotSet("card_last4", None), ActionExecutionRejected("lost_card_form")], [])


def test_asking_for_a_person_during_the_form_rejects_it(db_url):
    tracker = form_turn("transfer_form", "transfer_date", user("agent please, card 4821", "request_human"),
                        {"transfer_amount": "4821"}, slots={"transfer_amount": "250.00"})
    assert run(forms.ValidateTransferForm(), tracker) == (
        [SlotSet("transfer_amount", "250.00"), ActionExecutionRejected("transfer_form")], [])


def test_stop_ends_the_form_without_changes(db_url):
    tracker = form_turn("lost_card_form", "card_last4", user("stop", "nlu_fallback"), {"card_last4": "stop"})
    assert run(forms.ValidateLostCardForm(), tracker) == (
        [SlotSet("card_last4", None), SlotSet("replace_card", None), SlotSet("requested_slot", None)], [])
    tracker = after_form("lost_card_form", {})
    assert run(forms.ActionSubmitLostCard(), tracker) == (
        [SlotSet("card_last4", None), SlotSet("replace_card", None)], [{"response": "utter_form_stopped",
                                                                        "template": "utter_form_stopped"}])


def test_submit_cancels_and_orders_a_replacement(db_url):
    query(lambda db: db.freeze_card("C1001", "4821"))
    events, messages = run(forms.ActionSubmitLostCard(),
                           after_form("lost_card_form", {"card_last4": "4821", "replace_card": True}))
    assert events == [SlotSet("card_last4", None), SlotSet("replace_card", None)]
    assert messages == [{
        "text": "Done: your card ending 4821 is cancelled for good, and a free replacement is on its way to the "
                "address in your profile. It arrives in 3–5 working days in the UK (up to 10 working days "
                "elsewhere in the EEA); until then you can pay online with a free virtual card (Card > Virtual "
                "cards). If you've seen payments you didn't make, I can help you dispute them.",
        "buttons": [{"title": "Dispute a payment", "payload": "/card_payment_not_recognised"}, HUMAN],
    }]
    assert card(db_url, "C1001", "4821") == bank.Card("4821", "physical", "cancelled", True)


def test_submit_keeps_the_card_frozen_or_replaces_a_virtual_one(db_url):
    query(lambda db: db.freeze_card("C1001", "4821"))
    _, messages = run(forms.ActionSubmitLostCard(),
                      after_form("lost_card_form", {"card_last4": "4821", "replace_card": False}))
    assert messages == [{"text": "OK, your card ending 4821 stays frozen. If it turns up, you can unfreeze it in "
                                 "the Lakeside app under Card > Freeze; if it's gone for good, just tell me and "
                                 "I'll cancel it and order a free replacement."}]
    assert card(db_url, "C1001", "4821").status == "frozen"
    _, messages = run(forms.ActionSubmitLostCard(),
                      after_form("lost_card_form", {"card_last4": "9034", "replace_card": True}))
    assert messages == [{"text": "Done: your virtual card ending 9034 is cancelled for good. You can create a "
                                 "new virtual card straight away, free, in the Lakeside app under Card > "
                                 "Virtual cards."}]


# -- transfer status -----------------------------------------------------------------------------


def test_amount_and_date_from_the_first_message(db_url):
    message = user("I sent £250 yesterday and my friend hasn't got it", "transfer_not_received_by_recipient",
                   [("amount", "£250"), ("date", "yesterday")])
    tracker = activation("transfer_form", message,
                         {"transfer_direction": "out", "transfer_amount": "£250", "transfer_date": "yesterday"})
    assert run(forms.ValidateTransferForm(), tracker) == (
        [SlotSet("transfer_amount", "250.00"), SlotSet("transfer_date", "2026-03-10")], [])


def test_a_correction_while_asking_for_the_date_refills_the_amount(db_url):
    message = user("sorry, it was 250 not 150", "wrong_amount_of_cash_received", [("amount", "250"), ("amount", "150")])
    tracker = form_turn("transfer_form", "transfer_date", message,
                        {"transfer_amount": "150", "transfer_date": "sorry, it was 250 not 150"},
                        slots={"transfer_amount": "150.00"}, trigger="transfer_not_received_by_recipient")
    events, messages = run(forms.ValidateTransferForm(), tracker)
    assert events == [SlotSet("transfer_amount", "250.00"), SlotSet("transfer_date", None)]
    assert messages == [{"text": "Got it: £250.00, not £150.00."}]


@pytest.mark.parametrize("slot, text, value, message", [
    ("transfer_amount", "two hundred", None, "Sorry, I didn't catch the amount. Please type it in numbers, for "
                                             "example £250 or 45.99."),
    ("transfer_amount", "about 80 quid", "80.00", None),
    ("transfer_date", "3 days ago", "2026-03-08", None),
    ("transfer_date", "last week sometime", None, "Sorry, I didn't catch the date. You can type it like 3 March, "
                                                  "03/03 or \"yesterday\"."),
])
def test_amount_and_date_answers(db_url, slot, text, value, message):
    tracker = form_turn("transfer_form", slot, user(text, "nlu_fallback"), {slot: text},
                        trigger="transfer_not_received_by_recipient")
    assert run(forms.ValidateTransferForm(), tracker) == ([SlotSet(slot, value)], [{"text": message}] if message else [])


@pytest.mark.parametrize("direction, amount, day, text", [
    ("out", "250.00", "2026-03-10",
     "Your transfer of £250.00 to Priya Shah, sent yesterday (10 March), is pending: it's held for a security "
     "check because it is your first payment to this recipient. Held UK transfers are released within 1 working "
     "day, and you don't need to do anything. While it shows as Pending, you can still cancel it under Payments "
     "in the Lakeside app."),
    ("out", "150.00", "2026-03-10",
     "Your transfer of £150.00 to Jamie Clarke, sent yesterday (10 March), has been completed, so the money has "
     "left Lakeside. UK transfers reach the recipient's bank within 1 working day, though their bank may take a "
     "little longer to show it. You can send them proof of payment: tap the transfer under Payments and choose "
     "Share receipt (reference TX-1001-10)."),
    ("out", "1200", "2026-03-09",
     "Your transfer of €1,200.00 to Hans Müller, sent Monday 9 March, is pending: it's on its way between the "
     "banks. International transfers take 1–3 working days. While it shows as Pending, you can still cancel it "
     "under Payments in the Lakeside app."),
    ("out", "80.00", "2026-03-07",
     "Your transfer of £80.00 to Old Town Lettings, sent Saturday 7 March, failed: the recipient's sort code and "
     "account number don't match an account. The money came back to your Lakeside balance straight away. Please "
     "check the details with the recipient before sending it again."),
    ("out", "500.00", "2026-03-02",
     "Your transfer of £500.00 to Marta Nowak, sent 2 March, came back on Thursday 5 March: the receiving bank "
     "sent it back because the account is closed. The money is back in your Lakeside balance; please check the "
     "details with the recipient before sending it again."),
    ("in", "2350", "2026-03-09",
     "The payment of £2,350.00 from Acme Ltd, sent Monday 9 March, arrived on Monday 9 March and is in your "
     "balance. Tap it in your transaction list in the Lakeside app to see its details."),
    ("in", "300", "2026-03-11",
     "The payment of £300.00 from Chris Morgan, sent today (11 March), is on its way: it's being processed by the "
     "sending bank. Payments from UK accounts arrive within 1 working day, usually within minutes."),
])
def test_transfer_status_comes_from_the_database(db_url, direction, amount, day, text):
    slots = {"transfer_direction": direction, "transfer_amount": amount, "transfer_date": day}
    events, messages = run(forms.ActionSubmitTransfer(), after_form("transfer_form", slots))
    assert events == [SlotSet("transfer_amount", None), SlotSet("transfer_date", None),
                      SlotSet("transfer_direction", None)]
    assert messages == [{"text": text}]


def test_a_transfer_that_is_not_there(db_url):
    slots = {"transfer_direction": "out", "transfer_amount": "250.00", "transfer_date": "2026-03-09"}
    _, messages = run(forms.ActionSubmitTransfer(), after_form("transfer_form", slots))
    assert messages == [{
        "text": "I couldn't find a transfer of £250.00 on Monday 9 March. Around that date I can see: £250.00 to "
                "Priya Shah on yesterday (10 March) (pending); €1,200.00 to Hans Müller on Monday 9 March (pending). "
                "If a transfer is missing, a person from our team can look into it.",
        "buttons": [{"title": "Check another transfer", "payload": "/pending_transfer"}, HUMAN],
    }]


# -- disputed card payment -----------------------------------------------------------------------


def test_recent_card_payments_are_offered(db_url):
    _, messages = run(forms.ActionAskPaymentId(), sdk_tracker(in_form("dispute_form", "payment_id")))
    assert messages == [{
        "text": "Which card payment don't you recognise? Choose it below, or tell me its amount, the shop's name "
                "or the date.",
        "buttons": [
            {"title": "£4.50 · Coffee Corner · 11 Mar", "payload": '/inform{"payment_id": "TX-1001-01"}'},
            {"title": "£62.18 · Tesco Superstore · 10 Mar", "payload": '/inform{"payment_id": "TX-1001-02"}'},
            {"title": "£150.00 · Amazon Marketplace · 9 Mar", "payload": '/inform{"payment_id": "TX-1001-03"}'},
            {"title": "£23.40 · Uber · 8 Mar", "payload": '/inform{"payment_id": "TX-1001-04"}'},
            {"title": "£9.99 · StreamFlix · 7 Mar", "payload": '/inform{"payment_id": "TX-1001-05"}'},
        ],
    }]


@pytest.mark.parametrize("text, intent, candidate, events, message", [
    ('/inform{"payment_id": "TX-1001-03"}', "inform", "TX-1001-03",
     [SlotSet("payment_id", "TX-1001-03"), SlotSet("payment_candidates", None)], None),
    ("the £62.18 one", "inform", "£62.18",
     [SlotSet("payment_id", "TX-1001-02"), SlotSet("payment_candidates", None)], None),
    ("the Uber one", "out_of_scope", "the Uber one",
     [SlotSet("payment_id", "TX-1001-04"), SlotSet("payment_candidates", None)], None),
    ("18.75", "inform", "18.75",
     [SlotSet("payment_id", None), SlotSet("payment_candidates", ["TX-1001-07", "TX-1001-06"]),
      SlotSet("payment_confirmed", None)], "I found 2 card payments of £18.75. Which one is it?"),
    ("£999 at Tesco", "inform", "£999",
     [SlotSet("payment_id", None), SlotSet("payment_candidates", None), SlotSet("payment_confirmed", None)],
     "I couldn't find a card payment of £999.00 at Tesco Superstore in the last 120 days."),
    ("no idea", "nlu_fallback", "no idea", [SlotSet("payment_id", None)],
     "Sorry, I couldn't tell which payment you mean."),
])
def test_which_payment(db_url, text, intent, candidate, events, message):
    tracker = form_turn("dispute_form", "payment_id", user(text, intent), {"payment_id": candidate},
                        trigger="card_payment_not_recognised")
    assert run(forms.ValidateDisputeForm(), tracker) == (events, [{"text": message}] if message else [])


def test_the_payment_is_confirmed_before_the_dispute(db_url):
    ask = sdk_tracker(in_form("dispute_form", "payment_confirmed", {"payment_id": "TX-1001-03"}))
    assert run(forms.ActionAskPaymentConfirmed(), ask)[1] == [{
        "text": "Just to check: £150.00 at Amazon Marketplace on Monday 9 March, paid with your card ending 4821. "
                "Shall I open a dispute for it?",
        "buttons": [{"title": "Yes, dispute it", "payload": "/affirm"},
                    {"title": "No, another payment", "payload": "/deny"}],
    }]
    yes = form_turn("dispute_form", "payment_confirmed", user("yes", "affirm"), {"payment_confirmed": True},
                    slots={"payment_id": "TX-1001-03"})
    assert run(forms.ValidateDisputeForm(), yes) == ([SlotSet("payment_confirmed", True)], [])
    no = form_turn("dispute_form", "payment_confirmed", user("no", "deny"), {"payment_confirmed": False},
                   slots={"payment_id": "TX-1001-03"})
    assert run(forms.ValidateDisputeForm(), no) == (
        [SlotSet("payment_confirmed", None), SlotSet("payment_id", None), SlotSet("payment_candidates", None)],
        [{"text": "OK, let's find the right one."}])


def test_a_corrected_amount_while_confirming_finds_the_other_payment(db_url):
    message = user("no sorry, it was 62.18 not 150", "deny", [("amount", "62.18"), ("amount", "150")])
    tracker = form_turn("dispute_form", "payment_confirmed", message,
                        {"payment_id": "150", "payment_confirmed": False}, slots={"payment_id": "TX-1001-03"})
    assert run(forms.ValidateDisputeForm(), tracker) == (
        [SlotSet("payment_id", "TX-1001-02"), SlotSet("payment_confirmed", None),
         SlotSet("payment_candidates", None)], [])


def test_submit_opens_one_dispute_with_a_reference(db_url):
    tracker = after_form("dispute_form", {"payment_id": "TX-1001-03", "payment_confirmed": True})
    events, messages = run(forms.ActionSubmitDispute(), tracker)
    assert events == [SlotSet("payment_id", None), SlotSet("payment_candidates", None),
                      SlotSet("payment_confirmed", None)]
    assert messages == [{
        "text": "I've opened a dispute for the £150.00 payment at Amazon Marketplace. Its reference is DSP-000001. "
                "Our team will look into it and keep you updated in the Lakeside app. As someone may have your card "
                "details, please don't use that card again: I can freeze it for you now and order a free "
                "replacement.",
        "buttons": [{"title": "Freeze my card", "payload": "/compromised_card"}, HUMAN],
    }]
    _, messages = run(forms.ActionSubmitDispute(), tracker)
    assert messages == [{"text": "There's already an open dispute for the £150.00 payment at Amazon Marketplace: "
                                 "its reference is DSP-000001. We'll keep you updated in the Lakeside app."}]
    disputes = query(lambda db: db.disputes_of("C1001"))
    assert disputes == [bank.Dispute("DSP-000001", "TX-1001-03", "open")]


def test_submit_without_confirmation_changes_nothing(db_url):
    tracker = after_form("dispute_form", {"payment_id": "TX-1001-03"})
    assert run(forms.ActionSubmitDispute(), tracker)[1] == [{"response": "utter_form_stopped",
                                                             "template": "utter_form_stopped"}]
    assert query(lambda db: db.disputes_of("C1001")) == []


def test_the_action_server_serves_every_custom_action_of_the_domain():
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    executor.register_package("actions")
    custom = {a for a in DOMAIN.user_actions if not a.startswith("utter_")}
    assert custom <= set(executor.actions)
    assert {"validate_lost_card_form", "validate_transfer_form", "validate_dispute_form", "action_handoff",
            "action_session_start"} <= custom
