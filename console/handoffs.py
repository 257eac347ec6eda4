"""The one place the console reaches the handoff queue (the bank database's handoffs
table) and the release through Rasa (`python -m ops release`), so that a move of that
code changes the imports here only."""
from __future__ import annotations

from typing import Any, Dict, Optional

from assistant import bank

handoffs = bank.handoffs
OPEN = bank.OPEN
now = bank.now
sync_engine = bank.sync_engine
bank_db_url = bank.bank_db_url
release_handoff = bank.release_handoff
ensure_schema = bank.ensure_schema  # the tables, by the migrations (assistant/bank/migrate.py)


def release_to_bot(sender_id: str, rasa_url: str, token: str, released_by: str, timeout: float,
                   db_url: Optional[str] = None) -> Dict[str, Any]:
    """Today's `ops release`: resume the conversation, the bot says it is back, and the
    handoff is marked released (raises ops.handoff.HandoffError with a readable reason)."""
    from ops import handoff

    return handoff.release(sender_id, rasa_url, token=token, released_by=released_by, db_url=db_url, timeout=timeout)


def handoff_error() -> type:
    from ops import handoff

    return handoff.HandoffError


def display_url(url: Optional[str] = None) -> str:
    return bank.display_url(url)
