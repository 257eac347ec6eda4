"""The action server: rasa-sdk's app plus /metrics and a request timer.

    python -m actions.server --port 5055     (host: ACTIONS_HOST, default 127.0.0.1)

It refuses to start (exit code 2, the reason on stderr, one line) when the knowledge
index is missing or older than the knowledge pages (build it with
`.venvs/generator/bin/python -m assistant.knowledge build`; make setup does), or when
GENERATOR_URL does not serve GENERATOR_MODEL or EMBEDDINGS_URL does not serve
EMBEDDINGS_MODEL (GET /v1/models). A server that is not answering yet, or that says it
is still loading (/health 503, as the generator does), is waited for up to
GENERATOR_START_WAIT_S: the run command, the tests and compose start the generator and
the action server together. Every log record of the process goes through
guardrails.redact (card numbers, IBANs, e-mails, phone numbers), in LOG_FORMAT (text,
or one JSON object per line with the sender id and the request id: assistant/logs.py).
Each request to /webhook runs with the request id Rasa sent in X-Request-ID (or a new
one) and the conversation's sender id in context; the calls to the generator carry the
same X-Request-ID, and the response returns it. The process's HTTP client session to
those servers is closed when the server stops.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.request
import zlib
from typing import Dict, List, Optional, Tuple

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sanic import Sanic, response
from sanic.request import Request

from assistant import logs
from assistant import answers, guardrails, settings
from assistant import generator_client as generator
from assistant.knowledge import KnowledgeError
from actions.llm_reply import load_index
from actions.metrics import ACTION_SECONDS
from assistant import config


logger = logging.getLogger("actions.server")


def _payload(request: Request) -> Optional[dict]:
    """The webhook's JSON body (Rasa may deflate it), or None when unreadable."""
    try:
        body = request.body
        if request.headers.get("Content-Encoding") == "deflate":
            body = zlib.decompress(body)
        payload = json.loads(body)
        return payload if isinstance(payload, dict) else None
    except (ValueError, zlib.error, AttributeError, TypeError):
        return None


def _action_name(request: Request) -> str:
    payload = _payload(request)
    return "invalid" if payload is None else str(payload.get("next_action") or "unknown")


def build_app() -> Sanic:
    # Imported here, after the logging is set up: it imports sanic_cors, whose
    # deprecation warning is then a log line like any other (JSON with LOG_FORMAT=json).
    from rasa_sdk.endpoint import create_app

    guardrails.install_log_redaction()
    app = create_app("actions", cors_origins=None)
    # One line per action run: at INFO with JSON logs (to follow a turn), else DEBUG.
    action_level = logging.INFO if logs.log_format() == "json" else logging.DEBUG

    @app.middleware("request")
    async def start_timer(request: Request) -> None:
        request.ctx.started = time.perf_counter()
        # Sanic serves a keep-alive connection's requests in one task: set per request.
        logs.request_id.set(logs.accept_request_id(request.headers.get(logs.REQUEST_ID_HEADER)))
        sender = (_payload(request) or {}).get("sender_id") if request.path == "/webhook" else None
        logs.sender_id.set(str(sender) if sender else None)

    @app.middleware("response")
    async def observe(request: Request, resp) -> None:
        if request.path == "/webhook" and hasattr(request.ctx, "started"):
            seconds = time.perf_counter() - request.ctx.started
            action = _action_name(request)
            ACTION_SECONDS.labels(action, str(resp.status)).observe(seconds)
            logger.log(action_level, "action %s: HTTP %s in %d ms", action, resp.status, seconds * 1000)
        if resp is not None and logs.request_id.get():
            resp.headers[logs.REQUEST_ID_HEADER] = logs.request_id.get()

    @app.get("/metrics")
    async def metrics(_: Request) -> response.HTTPResponse:
        return response.raw(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    async def close_generator_client(_app, _loop) -> None:
        await generator.close()

    app.register_listener(close_generator_client, "after_server_stop")
    return app


# -- the start check: are the models served? -----------------------------------------


def _request(url: str, api_key: str, body: Optional[dict] = None, timeout: float = 5) -> Tuple[Optional[int], object]:
    """(HTTP status, decoded JSON or text), or (None, why) when nothing answered."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, str(getattr(error, "reason", error))
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")[:200]


def _loading(base_url: str) -> bool:
    """The server says it is still loading its models: /health (next to /v1) is 503."""
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    return _request(f"{root}/health", "", timeout=3)[0] == 503


def _model_problem(kind: str, base_url: str, model: str, api_key: str,
                   listed: Dict[str, Tuple[Optional[int], object]]) -> Tuple[Optional[str], bool]:
    """(None, _) when `base_url` serves `model`; else (what is wrong, whether waiting may help)."""
    if base_url not in listed:
        listed[base_url] = _request(f"{base_url}/models", api_key)
    status, body = listed[base_url]
    if status is None:
        return f"{base_url} is not answering ({body})", True
    if status == 404 and kind == "embeddings":
        # A text-embeddings server without /v1/models (Hugging Face TEI): ask it for one vector.
        status, body = _request(f"{base_url}/embeddings", api_key, {"model": model, "input": ["start check"]})
        if status == 200 and isinstance(body, dict) and body.get("data"):
            return None, False
        return f"{base_url} has no /models and its /embeddings answered HTTP {status} for {model!r}", False
    if status in (401, 403):
        key = "EMBEDDINGS_API_KEY" if kind == "embeddings" else "GENERATOR_API_KEY"
        return f"{base_url} refused the request (HTTP {status}): check {key}", False
    if status != 200 or not isinstance(body, dict):
        return f"{base_url}/models answered HTTP {status}", status in (502, 503, 504)
    served: List[str] = [str(item.get("id")) for item in body.get("data") or [] if isinstance(item, dict)]
    if model in served:
        return None, False
    setting = "EMBEDDINGS_URL / EMBEDDINGS_MODEL" if kind == "embeddings" else "GENERATOR_URL / GENERATOR_MODEL"
    problem = (f"the {kind} model {model!r} is not served at {base_url} "
               f"(it serves: {', '.join(served) or 'no model'}; set {setting})")
    return problem, _loading(base_url)


def check_models(wait_s: float = settings.GENERATOR_START_WAIT_S, poll_s: float = 2.0) -> Optional[str]:
    """None when GENERATOR_URL serves GENERATOR_MODEL and EMBEDDINGS_URL serves
    EMBEDDINGS_MODEL; else one line saying what is missing where. Servers not answering
    yet, or still loading, are asked again every `poll_s` seconds for up to `wait_s`."""
    wanted = [
        ("chat", settings.GENERATOR_URL, settings.GENERATOR_MODEL, settings.GENERATOR_API_KEY),
        ("embeddings", generator.embeddings_url(), settings.EMBEDDINGS_MODEL, settings.EMBEDDINGS_API_KEY),
    ]
    deadline = time.monotonic() + wait_s
    said_waiting = False
    while True:
        listed: Dict[str, Tuple[Optional[int], object]] = {}
        problems = [_model_problem(kind, url, model, key, listed) for kind, url, model, key in wanted]
        problems = [(problem, retry) for problem, retry in problems if problem]
        if not problems:
            return None
        remaining = deadline - time.monotonic()
        if not any(retry for _, retry in problems) or remaining <= 0:
            return "; ".join(dict.fromkeys(problem for problem, _ in problems))
        if not said_waiting:
            logger.info("waiting up to %.0f s for the models: %s", wait_s, problems[0][0])
            said_waiting = True
        time.sleep(min(poll_s, remaining))


def _refuse(reason: str) -> None:
    """Exit with code 2 and one line: on stderr as text, or as a JSON log line."""
    if logs.log_format() == "json":
        logger.critical("action server: %s", reason)
    else:
        print(f"action server: {reason}", file=sys.stderr, flush=True)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the action server.")
    try:
        address = config.action_server()
    except config.SettingsError as error:
        print(f"action server: {error}", file=sys.stderr)
        sys.exit(2)
    parser.add_argument("--port", type=int, default=address.port)
    parser.add_argument("--host", default=address.host)
    args = parser.parse_args()
    refusal = config.identity_settings_error()  # the old trust rule: refuse before anything runs
    if refusal:
        print(f"action server: {refusal}", file=sys.stderr)
        sys.exit(2)
    try:
        logs.configure(redact=guardrails.redact)
    except ValueError as error:
        print(f"action server: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        index = load_index()  # once per process, before the first request
    except KnowledgeError as error:
        _refuse(str(error))
    logger.info("knowledge index: %d passages from %d pages", len(index.passages), len(index.titles))
    if settings.ANSWER_GATE == "learned":
        try:
            answers.load_gate()
        except (OSError, ValueError, KeyError) as error:
            _refuse(f"answer gate {settings.ANSWER_GATE_FILE} not usable ({error}): refit it with "
                    "`python -m bench.gate`, or set ANSWER_GATE=rules")
    if settings.GENERATOR_START_CHECK:
        problem = check_models()
        if problem:
            _refuse(f"cannot start: {problem}")
        logger.info("models: chat %s at %s, embeddings %s at %s", settings.GENERATOR_MODEL,
                    settings.GENERATOR_URL, settings.EMBEDDINGS_MODEL, generator.embeddings_url())
    build_app().run(args.host, args.port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
