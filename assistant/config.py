"""Every environment variable of the bot's processes, read here and nowhere else.

Each process builds frozen settings objects from the environment with the functions
below (one per part: `bank()`, ...). A value that cannot be used stops the
process with a SettingsError that names the variable and says what it must be.

The customer-identity trust rule lives here too: only the channel's verified key of
the latest message names the customer (VERIFIED_CUSTOMER_KEY, docs/security.md), and a
process configured with the old rule that trusted a channel's own `customer_id` by
channel name refuses to start (`identity_settings_error`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A variable's value cannot be used; the message names it."""


def _environ(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ


# -- who the customer is ------------------------------------------------------------------

# The message metadata key of the customer the channel verified (addons/channels.py sets
# it, for an authenticated caller only, and removes any value a client sends under it):
# the only identity the actions trust.
VERIFIED_CUSTOMER_KEY = "verified_customer_id"
# Settings of the old trust rule (channel names trusted with a client's customer_id): a
# service configured with one refuses to start rather than run with another meaning.
OBSOLETE_IDENTITY_SETTINGS = {
    "BANK_CUSTOMER_ID_CHANNELS": "no channel name is trusted with a customer id any more; only an "
                                 "authenticated caller is (REST_CHANNEL_TOKEN, SOCKETIO_JWT_KEY): unset it",
}


def verified_customer_id(events: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """The customer the channel verified for the latest user message of these tracker
    events (dicts, as Rasa sends them to the action server), or None.

    Only `metadata[VERIFIED_CUSTOMER_KEY]` counts: the channels remove any value a client
    sends under that key and set it only for an authenticated caller. A client's own
    `metadata.customer_id` means nothing here, and an earlier message's identity does not
    carry over to a later one (each message of an authenticated caller carries it again).
    """
    for event in reversed(list(events)):
        if event.get("event") == "user":
            value = (event.get("metadata") or {}).get(VERIFIED_CUSTOMER_KEY)
            return value.strip() if isinstance(value, str) and value.strip() else None
    return None


def identity_settings_error(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Why this environment would trust an unauthenticated identity, or None."""
    env = _environ(environ)
    for name, why in OBSOLETE_IDENTITY_SETTINGS.items():
        if env.get(name, "").strip():
            return f"refusing to start: {name} is set, but {why} (README.md, Configuration)"
    return None


# -- the bank database ----------------------------------------------------------------------


@dataclass(frozen=True)
class BankSettings:
    # SQLAlchemy URL of the bank's data; a SQLite file under build/ by default.
    db_url: str = f"sqlite:///{ROOT / 'build' / 'bank.db'}"
    # The demo customer: the one the demo page's token names (ops/web.py), and
    # `python -m assistant.bank show`'s default. Never a default identity for a conversation.
    demo_customer_id: str = "C1001"


def bank(environ: Optional[Mapping[str, str]] = None) -> BankSettings:
    env = _environ(environ)
    return BankSettings(
        db_url=env.get("BANK_DB_URL") or BankSettings.db_url,
        demo_customer_id=env.get("BANK_DEMO_CUSTOMER_ID", BankSettings.demo_customer_id),
    )
