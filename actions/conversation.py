"""Turn a tracker's events into the chat messages an LLM prompt needs."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List

from actions import settings

SYSTEM_PROMPT = (
    "You are the customer support assistant of {bank}. Answer the customer's last "
    "message in one or two short, polite sentences. Do not invent account details, "
    "balances, fees or dates. If you are not sure, say so and offer to connect the "
    "customer with a person."
)


def recent_messages(events: Iterable[Dict[str, Any]], limit: int) -> List[Dict[str, str]]:
    """The last `limit` user and bot texts of the current session, oldest first."""
    messages: List[Dict[str, str]] = []
    for event in events:
        kind = event.get("event")
        if kind == "session_started":
            messages = []
        elif kind in ("user", "bot"):
            text = (event.get("text") or "").strip()
            if text and not text.startswith("/"):  # "/intent" payloads are buttons
                role = "user" if kind == "user" else "assistant"
                messages.append({"role": role, "content": text[: settings.LLM_MAX_MESSAGE_CHARS]})
    return messages[-limit:] if limit > 0 else []


def build_prompt(events: Iterable[Dict[str, Any]]) -> List[Dict[str, str]]:
    history = recent_messages(events, settings.LLM_HISTORY_MESSAGES)
    # A chat prompt must end with the user's turn; drop trailing bot messages.
    while history and history[-1]["role"] != "user":
        history.pop()
    system = {"role": "system", "content": SYSTEM_PROMPT.format(bank=settings.BANK_NAME)}
    return [system, *history]
