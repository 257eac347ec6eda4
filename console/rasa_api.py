"""Rasa's HTTP API as the console uses it (RASA_API_TOKEN, as `ops release`).

- the transcript: GET /conversations/<id>/tracker (every event, from the tracker store);
- an agent's reply: POST /conversations/<id>/tracker/events?execute_side_effects=true
  &output_channel=latest with one `bot` event. Rasa stores it in the tracker store as a
  bot message whose metadata carries `source: agent` and `author` (so analytics, erase and
  retention cover it like any other), and sends it through the channel the customer
  last wrote from: over socket.io at once, to the socket(s) in the conversation's room.
  The conversation stays paused: nothing is predicted, the bot says nothing.
- close: the same call with `resume`, `handoff_active = false` and a closing message
  whose `custom: {handoff: false}` removes the widget's notice.
"""
from __future__ import annotations

import time
import urllib.parse
from typing import Any, Dict, List, Optional

import aiohttp

from assistant.conversations import ReplySource

AGENT_SOURCE = ReplySource.AGENT.value


class RasaError(RuntimeError):
    """Rasa could not be reached or refused the call; the message says which."""


class RasaAPI:
    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        self.url, self.token = url.rstrip("/"), token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: Optional[aiohttp.ClientSession] = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _conversation(self, sender_id: str, path: str, **query: str) -> str:
        params = {**query, **({"token": self.token} if self.token else {})}
        return (f"{self.url}/conversations/{urllib.parse.quote(sender_id, safe='')}/{path}"
                + (f"?{urllib.parse.urlencode(params)}" if params else ""))

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        session = await self.session()
        try:
            async with session.request(method, url, json=body) as response:
                if response.status != 200:
                    text = (await response.text())[:300]
                    raise RasaError(f"Rasa answered {response.status}: {text}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise RasaError(f"Rasa is not reachable at {self.url}: {error or type(error).__name__}") from error

    async def events(self, sender_id: str) -> List[Dict[str, Any]]:
        tracker = await self._call("GET", self._conversation(sender_id, "tracker", include_events="ALL"))
        return list((tracker or {}).get("events") or [])

    async def _append(self, sender_id: str, events: List[Dict[str, Any]]) -> None:
        await self._call("POST", self._conversation(sender_id, "tracker/events",
                                                    execute_side_effects="true", output_channel="latest"), events)

    async def send_agent_message(self, sender_id: str, text: str, agent: str, display_name: str) -> float:
        """Store and send the agent's reply; its timestamp."""
        stamp = time.time()
        await self._append(sender_id, [{
            "event": "bot", "text": text, "timestamp": stamp, "data": {},
            "metadata": {"source": AGENT_SOURCE, "author": agent, "author_name": display_name},
        }])
        return stamp

    async def close_conversation(self, sender_id: str, text: str, agent: str, display_name: str) -> None:
        await self._append(sender_id, [
            {"event": "resume"},
            {"event": "slot", "name": "handoff_active", "value": False},
            {"event": "bot", "text": text, "timestamp": time.time(), "data": {"custom": {"handoff": False}},
             "metadata": {"source": AGENT_SOURCE, "author": agent, "author_name": display_name}},
        ])


def transcript(events: List[Dict[str, Any]], since: float = 0.0) -> List[Dict[str, Any]]:
    """The conversation as the agent reads it: messages, and where it was paused or resumed."""
    items: List[Dict[str, Any]] = []
    titles: Dict[str, str] = {}  # a clicked button's payload shows as its title, as in the widget
    for event in events:
        kind, stamp = event.get("event"), float(event.get("timestamp") or 0)
        if kind == "bot":
            buttons = (event.get("data") or {}).get("buttons") or (event.get("data") or {}).get("quick_replies") or []
            titles = {b.get("payload"): b.get("title") for b in buttons if isinstance(b, dict) and b.get("payload")}
        if stamp <= since:
            continue
        if kind == "user" and event.get("text"):
            if (event.get("metadata") or {}).get("is_external"):
                continue  # an intent triggered through the API (handoff_released)
            text = titles.get(event["text"], event["text"])
            if text.startswith("/"):
                continue  # a payload the widget sent by itself (/greet), not typed
            items.append({"kind": "user", "text": text, "ts": stamp})
        elif kind == "bot":
            metadata = event.get("metadata") or {}
            text = event.get("text") or ""
            custom = (event.get("data") or {}).get("custom")
            if not text and not custom:
                continue
            items.append({"kind": "agent" if metadata.get("source") == AGENT_SOURCE else "bot", "text": text,
                          "ts": stamp, "author": metadata.get("author_name") or metadata.get("author"),
                          "source": metadata.get("source")})
        elif kind == "pause":
            items.append({"kind": "event", "text": "handed to a person: the bot is paused", "ts": stamp})
        elif kind == "resume":
            items.append({"kind": "event", "text": "the bot answers again", "ts": stamp})
    return items
