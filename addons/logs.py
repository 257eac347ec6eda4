"""Rasa's side of the structured logs and the request id (assistant/logs.py).

Installed by `addons.prepare_rasa()` when Rasa loads a module of ours by its path, which
`rasa run` does while it creates the input channels, before it makes its Sanic app:

- every HTTP request to Rasa gets a request id: its `X-Request-ID` header when that is
  a plain token, else a new one (a websocket's socket.io messages get one each), sent
  back in the response's `X-Request-ID`;
- each customer message is handled with its sender id and request id in context, and
  every call Rasa makes to the action server (and any other endpoint) carries the
  request id in `X-Request-ID`;
- with LOG_FORMAT=json, Rasa's loggers (its own, structlog's events, Sanic's) write one
  JSON object per line, redacted by actions.guardrails.redact, and each turn logs
  "message received" and "turn done" lines. With LOG_FORMAT=text (the default) Rasa's
  logging is left as it is.
"""
from __future__ import annotations

import logging
import time
from typing import Any, List, Optional, Text

from assistant import logs

logger = logging.getLogger("addons.turns")
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    json_mode = logs.log_format() == "json"
    _pass_request_ids()
    _trace_turns(logging.INFO if json_mode else logging.DEBUG)
    if json_mode:
        _json_logging()
        # Rasa sets the level of its own loggers (LOG_LEVEL), not the root's: the turn
        # lines are INFO whatever the root logger lets through.
        logger.setLevel(logging.INFO)


def _pass_request_ids() -> None:
    """Rasa's calls to its endpoints (the action server) carry the turn's request id."""
    from rasa.utils.endpoints import EndpointConfig

    original = EndpointConfig.request

    async def request(self: EndpointConfig, method: Text = "post", subpath: Optional[Text] = None,
                      content_type: Optional[Text] = "application/json", compress: bool = False,
                      **kwargs: Any) -> Optional[Any]:
        current = logs.request_id.get()
        if current:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault(logs.REQUEST_ID_HEADER, current)
            kwargs["headers"] = headers
        return await original(self, method, subpath, content_type, compress, **kwargs)

    EndpointConfig.request = request


def _trace_turns(level: int) -> None:
    import rasa.core.channels.channel as channel
    from rasa.core.agent import Agent

    original_register = channel.register

    def register(input_channels: List[Any], app: Any, route: Optional[Text]) -> None:
        original_register(input_channels, app, route)

        async def take_request_id(request: Any) -> None:
            # Sanic serves a keep-alive connection's requests in one task: set per request.
            logs.sender_id.set(None)
            if request.headers.get("upgrade"):  # a websocket: each message gets its own id
                logs.request_id.set(None)
                return
            logs.request_id.set(logs.accept_request_id(request.headers.get(logs.REQUEST_ID_HEADER)))

        async def give_request_id(request: Any, response: Any) -> None:
            current = logs.request_id.get()
            if current and response is not None and hasattr(response, "headers"):
                response.headers[logs.REQUEST_ID_HEADER] = current

        app.register_middleware(take_request_id, "request")
        app.register_middleware(give_request_id, "response")

    channel.register = register

    original_handle = Agent.handle_message

    async def handle_message(self: Agent, message: Any) -> Any:
        sender = logs.sender_id.set(message.sender_id)
        request = logs.request_id.set(logs.request_id.get() or logs.new_request_id())
        started = time.perf_counter()
        logger.log(level, "message received on %s", message.input_channel)
        try:
            return await original_handle(self, message)
        finally:
            logger.log(level, "turn done in %d ms", (time.perf_counter() - started) * 1000)
            logs.request_id.reset(request)
            logs.sender_id.reset(sender)

    Agent.handle_message = handle_message


def _json_logging() -> None:
    from sanic.log import LOGGING_CONFIG_DEFAULTS

    from assistant.guardrails import redact

    root = logging.getLogger()
    logs.configure(level=root.level if root.level != logging.NOTSET else logging.INFO, redact=redact)
    # Sanic's loggers get handlers of their own when Rasa makes its app (from this dict,
    # after this runs), and Rasa stops them propagating: JSON there too.
    for formatter in LOGGING_CONFIG_DEFAULTS["formatters"].values():
        formatter.clear()
        formatter["()"] = "assistant.logs.JsonFormatter"
    # Handlers other loggers already have (none expected) write JSON as well.
    for existing in list(logging.Logger.manager.loggerDict.values()):
        for handler in getattr(existing, "handlers", []):
            handler.setFormatter(logs.JsonFormatter())
