"""Log lines for people (LOG_FORMAT=text, the default) or for log collectors
(LOG_FORMAT=json): one JSON object per line with time, level, logger, message and,
where known, the conversation (`sender_id`) and the request (`request_id`) the line
belongs to.

The request id is taken from the channel's `X-Request-ID` header (REST) or made there,
one per customer message, and passed on in the same header: Rasa -> action server ->
generator (addons/logs.py, actions/server.py, assistant/generator_client.py,
generator/logs.py), so one customer turn can be followed across the three services.
Both ids live in context variables, which asyncio copies into the tasks a request
starts.

Used by the action server and, through addons/logs.py, by Rasa; stdlib only. The
generator has its own copy of the formatter (generator/logs.py: its image holds no
other package), with the same keys.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from typing import Any, Callable, Dict, Optional, TextIO

from assistant import config

REQUEST_ID_HEADER = "X-Request-ID"
FORMATS = config.LOG_FORMATS
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: ContextVar[Optional[str]] = ContextVar("request_id", default=None)
sender_id: ContextVar[Optional[str]] = ContextVar("sender_id", default=None)

# A request id a caller sends is kept when it looks like one (a UUID, a trace id, ...):
# anything else (too long, spaces, quotes, control characters) is replaced by a new one.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def log_format() -> str:
    """LOG_FORMAT, `text` or `json`; ValueError for anything else (assistant/config.py)."""
    return config.log_format()


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: Optional[str]) -> str:
    """The caller's request id when it is a plain token, else a new one."""
    return value if value and _REQUEST_ID.match(value) else new_request_id()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message,
    sender_id and request_id (from the record, else the context; left out when
    unknown), exception (the traceback) when there is one. A message that is itself a
    JSON object with an "event" (Rasa's structlog events) becomes that event, with the
    rest of it under "data". `redact` (class-wide, set by `configure`) is applied to
    the message, the data and the traceback."""

    redact: Optional[Callable[[str], str]] = None

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message and hasattr(record, "request") and hasattr(record, "status"):
            message = f"{record.request} {record.status}"  # Sanic's access lines carry them as extras
        entry: Dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if message.startswith("{") and message.endswith("}"):
            try:
                event = json.loads(message)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                entry["message"] = str(event.pop("event"))
                event.pop("log_level", None)  # the level is ours
                entry["data"] = event
        for key, var in (("sender_id", sender_id), ("request_id", request_id)):
            value = getattr(record, key, None) or var.get()
            if value:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        redact = type(self).redact
        if redact:  # the free text only: ids and times are not personal data
            for key in ("message", "data", "exception"):
                if key in entry:
                    entry[key] = _redacted(entry[key], redact)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item, redact) for item in value]
    return value


def configure(level: int = logging.INFO, redact: Optional[Callable[[str], str]] = None,
              stream: Optional[TextIO] = None) -> str:
    """Give the root logger one handler, in LOG_FORMAT, at `level`; the format used.
    In json mode Python's warnings are logged too (logger py.warnings), so every line
    the process writes through Python is a JSON object."""
    chosen = log_format()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    if chosen == "json":
        JsonFormatter.redact = staticmethod(redact) if redact else None
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
