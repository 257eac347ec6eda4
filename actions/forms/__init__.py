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

The package, one module per concern: base.py (the common validation and what the forms
share), lost_card.py, transfer.py, dispute.py; the tracker helpers are in
actions/tracker.py.
"""
from actions.forms.base import (
    HUMAN_BUTTON,
    LOST_CARD_WITHOUT_APP,
    SIGN_IN_REQUIRED,
    BankFormValidation,
    reset,
    today,
)
from actions.forms.dispute import (
    DISPUTE_WINDOW_DAYS,
    ActionAskPaymentConfirmed,
    ActionAskPaymentId,
    ActionSubmitDispute,
    ValidateDisputeForm,
)
from actions.forms.lost_card import ActionAskCardLast4, ActionSubmitLostCard, ValidateLostCardForm
from actions.forms.transfer import ActionSubmitTransfer, ValidateTransferForm
from actions.tracker import FORM_SLOTS, REQUESTED_SLOT, customer_id, identified

# The intents whose rule starts a form after action_llm_reply's answer (data/rules/forms.yml).
FORM_INTENTS = frozenset(intent for form in (ValidateLostCardForm, ValidateTransferForm, ValidateDisputeForm)
                         for intent in form.trigger_intents)

__all__ = [
    "DISPUTE_WINDOW_DAYS", "FORM_INTENTS", "FORM_SLOTS", "HUMAN_BUTTON", "LOST_CARD_WITHOUT_APP", "REQUESTED_SLOT",
    "SIGN_IN_REQUIRED", "ActionAskCardLast4", "ActionAskPaymentConfirmed", "ActionAskPaymentId",
    "ActionSubmitDispute", "ActionSubmitLostCard", "ActionSubmitTransfer", "BankFormValidation",
    "ValidateDisputeForm", "ValidateLostCardForm", "ValidateTransferForm", "customer_id", "identified", "reset",
    "today",
]
