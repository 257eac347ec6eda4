"""Rasa's REST channel with strict input checks in front of it.

Stock RestInput answers 500 to a JSON body that is not an object and takes messages
of any size. This channel keeps the same URL (/webhooks/rest/webhook) and behaviour
for valid requests, and answers bad ones with a 4xx and a JSON error instead.
"""
from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable, Optional

from rasa.core.channels.channel import UserMessage
from rasa.core.channels import rest
from sanic import Blueprint, response
from sanic.request import Request

# Longest user message accepted, in characters; longer ones get HTTP 413.
MAX_MESSAGE_CHARS = int(os.environ.get("MAX_MESSAGE_CHARS", "4000"))


def _error(status: int, message: str) -> response.HTTPResponse:
    return response.json({"error": message}, status=status)


def check_body(body: bytes, max_chars: int = MAX_MESSAGE_CHARS) -> Optional[response.HTTPResponse]:
    """The error response for a bad webhook body, or None when it is acceptable."""
    try:
        payload: Any = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _error(400, "The request body must be UTF-8 encoded JSON.")
    except ValueError:
        return _error(400, "The request body must be a JSON object.")
    if not isinstance(payload, dict):
        return _error(400, "The request body must be a JSON object.")
    sender, message = payload.get("sender"), payload.get("message")
    if sender is not None and not isinstance(sender, str):
        return _error(400, "'sender' must be a string.")
    if isinstance(sender, str) and not sender.strip():
        return _error(400, "'sender' must not be empty.")
    if not isinstance(message, str):
        return _error(400, "'message' must be a string.")
    if len(message) > max_chars:
        return _error(413, f"'message' is longer than {max_chars} characters.")
    return None


class RestInput(rest.RestInput):
    """The `rest` channel, answering malformed requests with a 4xx."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Blueprint:
        blueprint = super().blueprint(on_new_message)

        @blueprint.middleware("request")
        async def validate(request: Request) -> Optional[response.HTTPResponse]:
            if request.method == "POST" and request.path.endswith("/webhook"):
                return check_body(request.body or b"")
            return None

        return blueprint
