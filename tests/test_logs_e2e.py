"""Structured logs (LOG_FORMAT=json) and the request id, on the real stack: one customer
turn is followed across Rasa, the action server and the generator by its X-Request-ID;
and the formatters themselves (keys, redaction, Rasa's structlog events)."""
from __future__ import annotations

import io
import json
import logging
import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from assistant import logs
from assistant import guardrails
from assistant import bank
from ops import stack

QUESTION = "how long does it take for a new card to arrive?"


def _lines(path: Path) -> Tuple[List[Dict[str, Any]], List[str]]:
    """(the JSON objects, the lines that are not JSON objects) of a log file."""
    objects, others = [], []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        (objects if isinstance(value, dict) else others).append(value if isinstance(value, dict) else line)
    return objects, others


@pytest.fixture(scope="module")
def json_stack(tmp_path_factory, trained_model):
    work = tmp_path_factory.mktemp("json-logs")
    gen_port, act_port, rasa_port = stack.free_port(), stack.free_port(), stack.free_port()
    bank_url = f"sqlite:///{work / 'bank.db'}"
    bank.seed(bank_url)
    json_env = {"LOG_FORMAT": "json"}
    services = [
        stack.generator_service(gen_port, work, env=json_env),
        stack.actions_service(act_port, work, env={**json_env, "GENERATOR_URL": f"http://127.0.0.1:{gen_port}/v1",
                                                   "BANK_DB_URL": bank_url}),
        stack.rasa_service(rasa_port, work, trained_model, stack.endpoints_for(act_port, work),
                           env={**json_env, "TRACKER_STORE_URL": f"sqlite:///{work / 'tracker.db'}"}),
    ]
    with stack.running(services):
        yield {"url": f"http://127.0.0.1:{rasa_port}", "services": {s.name: s for s in services}}


def _say(url: str, sender: str, text: str, request_id: Optional[str] = None) -> Tuple[List[dict], str]:
    """One REST turn; (the replies, the X-Request-ID Rasa answered with)."""
    headers = {"Content-Type": "application/json", **({logs.REQUEST_ID_HEADER: request_id} if request_id else {})}
    request = urllib.request.Request(f"{url}/webhooks/rest/webhook", method="POST", headers=headers,
                                     data=json.dumps({"sender": sender, "message": text}).encode())
    with urllib.request.urlopen(request, timeout=90) as response:
        return json.loads(response.read()), response.headers.get(logs.REQUEST_ID_HEADER, "")


def _of_request(path: Path, request_id: str) -> List[Dict[str, Any]]:
    return [entry for entry in _lines(path)[0] if entry.get("request_id") == request_id]


def test_one_turn_is_followed_across_the_three_services_by_its_request_id(json_stack):
    services = json_stack["services"]
    sender = f"logs-{uuid.uuid4().hex[:8]}"
    given = f"turn-{uuid.uuid4().hex}"
    replies, answered = _say(json_stack["url"], sender, QUESTION, request_id=given)
    assert "working days" in replies[0]["text"]
    assert answered == given  # the channel took the caller's id

    rasa = _of_request(services["rasa"].log_path, given)
    actions = _of_request(services["actions"].log_path, given)
    generator = _of_request(services["generator"].log_path, given)
    assert [e["message"] for e in rasa if e["logger"] == "addons.turns"][:1] == ["message received on rest"]
    assert any(e["message"].startswith("turn done in ") for e in rasa)
    assert all(e["sender_id"] == sender for e in rasa + actions)
    assert any(e["message"].startswith("action action_llm_reply: HTTP 200 in ") for e in actions)
    assert any("POST /v1/embeddings" in e["message"] and e["logger"] == "uvicorn.access" for e in generator)
    for entry in rasa + actions + generator:
        assert {"time", "level", "logger", "message", "request_id"} <= set(entry), entry

    # Without a header the channel makes one, and it travels the same way.
    _, made = _say(json_stack["url"], sender, "and what if it still hasn't come after that?")
    assert made and made != given
    assert _of_request(services["rasa"].log_path, made) and _of_request(services["actions"].log_path, made)
    # An id that is not a plain token is not taken (nor written into the logs).
    _, replaced = _say(json_stack["url"], sender, "thanks", request_id='bad id "quoted"')
    assert replaced and " " not in replaced


def test_every_line_the_services_write_is_json(json_stack):
    for name, service in json_stack["services"].items():
        lines = [line for line in service.log_path.read_text(errors="replace").splitlines() if line.strip()]
        first = next(i for i, line in enumerate(lines) if line.startswith("{"))
        for line in lines[first:]:
            assert isinstance(json.loads(line), dict), (name, line)
            assert {"time", "level", "logger", "message"} <= set(json.loads(line)), (name, line)
        # Before: only what Python's warnings module prints while Rasa imports its
        # libraries, before any code of the project runs (sanic sets such warnings to
        # "once", so PYTHONWARNINGS cannot silence them). The action server and the
        # generator have none.
        before = lines[:first]
        if name == "rasa":
            assert not before or re.match(r"^/\S+\.py:\d+: \w*Warning: ", before[0]), before
            assert all(re.match(r"^(/\S+\.py:\d+: \w*Warning: |\s|Implementing )", line) for line in before), before
        else:
            assert before == [], (name, before)


def test_the_json_formatter_keys_context_structlog_events_and_redaction():
    from generator.logs import JsonFormatter as GeneratorFormatter

    stream = io.StringIO()
    logger = logging.getLogger("test.json-logs")
    handler = logging.StreamHandler(stream)
    formatter = logs.JsonFormatter()
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logs.JsonFormatter.redact = staticmethod(guardrails.redact)
    try:
        sender, request = logs.sender_id.set("web-42"), logs.request_id.set("0123456789012345678901")
        logger.warning("customer wrote 4111 1111 1111 1111 and jane@example.com")
        logger.info(json.dumps({"event": "processor.actions.log", "action_name": "action_listen",
                                "log_level": "debug", "text": "call me on 07700 900123"}))
        logs.request_id.reset(request)
        logs.sender_id.reset(sender)
        logger.info("no conversation here")
    finally:
        logs.JsonFormatter.redact = None
        logger.removeHandler(handler)
    first, event, plain = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert set(first) == {"time", "level", "logger", "message", "sender_id", "request_id"}
    assert first["level"] == "WARNING" and first["logger"] == "test.json-logs"
    assert "4111" not in first["message"] and "jane@example.com" not in first["message"]
    assert first["request_id"] == "0123456789012345678901"  # ids are not redacted as numbers
    assert first["time"].endswith("+00:00")
    assert event["message"] == "processor.actions.log" and event["data"]["action_name"] == "action_listen"
    assert "07700 900123" not in event["data"]["text"]
    assert "sender_id" not in plain and "request_id" not in plain
    # The generator's formatter writes the same keys.
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", ("POST /v1/embeddings",), None)
    assert set(json.loads(GeneratorFormatter().format(record))) == {"time", "level", "logger", "message"}


def test_request_ids_from_callers_are_kept_only_when_plain():
    assert logs.accept_request_id("3f2a-41:b.c_d") == "3f2a-41:b.c_d"
    for bad in (None, "", "a b", 'x"y', "x" * 129, "line\nbreak"):
        made = logs.accept_request_id(bad)
        assert made != bad and len(made) == 32
