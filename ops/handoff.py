"""The human handoff queue: list the conversations waiting for a person, release one.

    python -m ops handoffs [--all]                 # the queue (bank database, BANK_DB_URL)
    python -m ops release SENDER_ID [--by NAME]    # give the conversation back to the bot

A conversation is queued by action_handoff (actions/handoff.py), which also pauses it in
Rasa. Releasing it, through Rasa's HTTP API with its token (RASA_API_TOKEN or
build/rasa-api-token, as `ops promote` reads it):
  1. POST /conversations/<id>/tracker/events: ConversationResumed, handoff_active=false;
  2. POST /conversations/<id>/trigger_intent?output_channel=latest: the external intent
     handoff_released, so the bot says it is back, with custom {handoff: false}, on the
     channel the customer last wrote from (the chat widget removes its notice);
  3. marks the handoff released in the bank database (who, when).
The bot then answers that conversation again.
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import urllib.error
import urllib.parse
from typing import Any, Dict, List, Optional

from assistant import bank, config
from ops import settings
from ops.stack import post

RELEASE_INTENT = "handoff_released"


class HandoffError(RuntimeError):
    pass


def operator_name() -> str:
    try:
        return config.ops().operator or getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "operator"


def release(sender_id: str, rasa_url: Optional[str] = None, token: Optional[str] = None,
            released_by: Optional[str] = None, db_url: Optional[str] = None,
            timeout: float = 60) -> Dict[str, Any]:
    """Give a handed-off conversation back to the bot; what the bot sent (REST senders)."""
    from ops.lifecycle import api_token

    waiting = [h for h in bank.list_handoffs(db_url) if h.sender_id == sender_id]
    if not waiting:
        raise HandoffError(f"no open handoff for {sender_id!r} (`python -m ops handoffs` lists them)")
    rasa_url = (rasa_url or f"http://127.0.0.1:{settings.RASA_PORT}").rstrip("/")
    token = api_token() if token is None else token
    query = urllib.parse.urlencode({"token": token}) if token else ""
    base = f"{rasa_url}/conversations/{urllib.parse.quote(sender_id, safe='')}"
    events = [{"event": "resume"}, {"event": "slot", "name": "handoff_active", "value": False}]
    try:
        status, body = post(f"{base}/tracker/events?{query}", json.dumps(events).encode(), timeout)
        if status != 200:
            raise HandoffError(f"resuming the conversation: Rasa answered {status}: {str(body)[:300]}")
        query_latest = urllib.parse.urlencode({"output_channel": "latest", **({"token": token} if token else {})})
        status, body = post(f"{base}/trigger_intent?{query_latest}", json.dumps({"name": RELEASE_INTENT}).encode(), timeout)
        if status != 200:
            raise HandoffError(f"triggering {RELEASE_INTENT}: Rasa answered {status}: {str(body)[:300]}")
    except (urllib.error.URLError, OSError) as error:
        raise HandoffError(f"Rasa is not reachable at {rasa_url}: {error}") from error
    handoff = bank.release_handoff(sender_id, released_by or operator_name(), db_url)
    return {"handoff": handoff, "messages": (body or {}).get("messages", [])}


def _age(since: dt.datetime, now: dt.datetime) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes // 1440} days"


def queue_text(handoffs: List[bank.Handoff], now: Optional[dt.datetime] = None) -> str:
    """The queue as a table, oldest first."""
    if not handoffs:
        return "no conversations are waiting for a person"
    now = now or bank.now()
    rows = [("SENDER", "CUSTOMER", "STATUS", "REQUESTED (UTC)", "WAITING", "REASON")]
    for h in handoffs:
        waited = _age(h.requested_at, h.released_at or now)
        rows.append((h.sender_id, h.customer_id or "-", h.status, h.requested_at.strftime("%Y-%m-%d %H:%M"),
                     waited, h.reason + (f" (released by {h.released_by})" if h.released_by else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)
