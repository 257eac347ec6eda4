"""What the socket.io channel (addons/channels.py SocketIOInput) sends: the widget's view
of a conversation's history, the output channel (one bubble per stored message, custom
payloads as they are, an agent's name, cited pages), and emits through Redis to every
Rasa replica. Imported by addons/channels.py, which Rasa loads by its path.
"""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa.core.channels import socketio
from rasa.shared.core.events import BotUttered, UserUttered

from assistant import config

# The most messages a `history` answer carries (the newest ones).
HISTORY_MESSAGES = 200


def history(events: List[Any]) -> Dict[str, Any]:
    """The widget's view of a conversation: user and bot messages, and handoff state.

    A user message that is a button payload ("/request_human") shows as the button's
    title, as it did when it was clicked.
    """
    messages: List[Dict[str, Any]] = []
    handoff = False
    titles: Dict[str, str] = {}
    for event in events:
        if isinstance(event, UserUttered) and event.text:
            if (event.metadata or {}).get("is_external"):
                continue  # an intent triggered through the API (e.g. handoff_released), not typed
            text = titles.get(event.text, event.text)
            if text.startswith("/"):
                continue  # an initial payload such as /greet, not typed by the customer
            messages.append({"from": "user", "text": text, "ts": event.timestamp})
        elif isinstance(event, BotUttered):
            data = event.data or {}
            buttons = data.get("buttons") or data.get("quick_replies") or []
            titles = {b.get("payload"): b.get("title") for b in buttons if b.get("payload")}
            custom = data.get("custom") or {}
            if isinstance(custom, dict) and "handoff" in custom:
                handoff = bool(custom["handoff"])
            if event.text:
                messages.append({
                    "from": "bot", "text": event.text, "ts": event.timestamp,
                    "buttons": [{"title": b.get("title"), "payload": b.get("payload")} for b in buttons],
                })
                metadata = event.metadata or {}
                if metadata.get("source") == "agent" and isinstance(metadata.get("author_name"), str):
                    messages[-1]["author"] = metadata["author_name"]
                sources = metadata.get("sources")
                if isinstance(sources, list) and sources and all(isinstance(s, str) for s in sources):
                    messages[-1]["sources"] = sources
    return {"messages": messages[-HISTORY_MESSAGES:], "handoff": handoff}


class SocketIOOutput(socketio.SocketIOOutput):
    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        await self._send_message(recipient_id, json_message)

    # One bubble per stored message: Rasa's output splits a text at blank lines into
    # several messages (an answer and its "Source:" line, an agent's paragraphs), which
    # the widget then showed apart live and together after a reload (history).
    # A message a person of the support team wrote (agent console) carries their name.
    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        message: Dict[str, Any] = {"text": text.strip()}
        if kwargs.get("source") == "agent" and isinstance(kwargs.get("author_name"), str):
            message["author"] = kwargs["author_name"]
        sources = kwargs.get("sources")
        if isinstance(sources, list) and sources and all(isinstance(s, str) for s in sources):
            message["sources"] = sources  # cited knowledge pages: the widget links "Source:" to them
        await self._send_message(recipient_id, message)

    async def send_text_with_buttons(self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]],
                                     **kwargs: Any) -> None:
        await self._send_message(recipient_id, {"text": text.strip(), "quick_replies": [
            {"content_type": "text", "title": b["title"], "payload": b["payload"]} for b in buttons]})


def use_redis_manager(sio: Any) -> None:
    """With SOCKETIO_REDIS_URL set, emits go through Redis to every Rasa replica, so a
    message sent on one replica (an agent's reply through Rasa's API, which nginx sends
    to any replica) reaches the customer's socket held by another (python-socketio's
    AsyncRedisManager; pub/sub channel SOCKETIO_REDIS_CHANNEL)."""
    settings = config.channels()
    if not settings.socketio_redis_url:
        return
    import socketio as python_socketio

    manager = python_socketio.AsyncRedisManager(settings.socketio_redis_url,
                                                channel=settings.socketio_redis_channel)
    sio.manager = manager
    manager.set_server(sio)
    sio.manager_initialized = False
