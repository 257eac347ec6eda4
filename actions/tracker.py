"""Reading a conversation's tracker: who the customer is, its latest message, a slot's
value before this turn; and the forms' slots, which a handoff clears too.

Plain functions over the tracker's events (the dicts Rasa sends the action server), with
no rasa-sdk import: the forms (actions/forms/) and the handoff (actions/handoff.py) share them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from assistant import config

if TYPE_CHECKING:
    from rasa_sdk import Tracker

REQUESTED_SLOT = "requested_slot"
FORM_SLOTS = {
    "lost_card_form": ["card_last4", "replace_card"],
    "transfer_form": ["transfer_amount", "transfer_date", "transfer_direction"],
    "dispute_form": ["payment_id", "payment_candidates", "payment_confirmed"],
}


def customer_id(tracker: Tracker) -> Optional[str]:
    """The customer the channel verified for the latest user message, or None
    (the rule: assistant.config.verified_customer_id)."""
    return config.verified_customer_id(tracker.events)


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

