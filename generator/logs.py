"""The generator's log lines: text (LOG_FORMAT=text, the default), or one JSON object
per line (LOG_FORMAT=json) with time, level, logger, message and the request id.

The request id comes in the `X-Request-ID` header (the action server passes on the one
Rasa's channel took or made for the customer's message: assistant/logs.py, whose
formatter this one mirrors, key for key; the generator's image holds no other
package). A request without one, or with one that is not a plain token, gets a new one;
the response carries it back. uvicorn's access lines are logged inside the request, so
they carry it too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import uuid
from contextvars import ContextVar
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_json = False
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def accept_request_id(value: str | None) -> str:
    return value if value and _REQUEST_ID.match(value) else uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """time (UTC, ISO 8601), level, logger, message, request_id (when known), exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = getattr(record, "request_id", None) or request_id.get()
        if current:
            entry["request_id"] = str(current)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: str, level: str) -> dict | None:
    """Set up the process's logging; the log_config to give uvicorn (None: uvicorn's
    loggers propagate to the root logger's JSON handler)."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    root.setLevel(level.upper())
    root.addHandler(handler)
    if log_format != "json":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        import uvicorn.config

        return uvicorn.config.LOGGING_CONFIG
    handler.setFormatter(JsonFormatter())
    logging.captureWarnings(True)
    global _json
    _json = True
    # No progress bars (transformers' "Loading weights" on stderr): read at import.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    return None


def adopt_library_loggers() -> None:
    """With JSON logs, transformers' logger (which has a text handler of its own) goes
    through the root logger too; called where the loader thread imports it."""
    if not _json:
        return
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    transformers_logging.disable_progress_bar()


class RequestIdMiddleware:
    """Each HTTP request runs with its request id in context and returns it in its
    response's X-Request-ID header (the outermost middleware, so everything inside,
    uvicorn's access line included, sees it)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((value.decode("latin-1") for key, value in scope.get("headers", [])
                      if key.lower() == b"x-request-id"), None)
        current = accept_request_id(given)
        token = request_id.set(current)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", current.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
