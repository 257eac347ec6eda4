"""The action server: rasa-sdk's app plus /metrics and a request timer.

    python -m actions.server --port 5055     (host: ACTIONS_HOST, default 127.0.0.1)

It refuses to start (exit code 2, the reason on stderr) when the knowledge index is
missing or older than the knowledge pages: build it with
`.venvs/generator/bin/python -m actions.knowledge build` (make setup does). Every log
record of the process goes through guardrails.redact (card numbers, IBANs, e-mails,
phone numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rasa_sdk.endpoint import create_app
from sanic import Sanic, response
from sanic.request import Request

from actions import guardrails
from actions.knowledge import KnowledgeError
from actions.llm_reply import load_index
from actions.metrics import ACTION_SECONDS


def _action_name(request: Request) -> str:
    try:
        body = request.body
        if request.headers.get("Content-Encoding") == "deflate":
            body = zlib.decompress(body)
        return str(json.loads(body).get("next_action") or "unknown")
    except (ValueError, zlib.error, AttributeError):
        return "invalid"


def build_app() -> Sanic:
    guardrails.install_log_redaction()
    app = create_app("actions", cors_origins=None)

    @app.middleware("request")
    async def start_timer(request: Request) -> None:
        request.ctx.started = time.perf_counter()

    @app.middleware("response")
    async def observe(request: Request, resp) -> None:
        if request.path == "/webhook" and hasattr(request.ctx, "started"):
            ACTION_SECONDS.labels(_action_name(request), str(resp.status)).observe(
                time.perf_counter() - request.ctx.started
            )

    @app.get("/metrics")
    async def metrics(_: Request) -> response.HTTPResponse:
        return response.raw(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the action server.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ACTIONS_PORT", "5055")))
    parser.add_argument("--host", default=os.environ.get("ACTIONS_HOST", "127.0.0.1"))
    args = parser.parse_args()
    try:
        index = load_index()  # once per process, before the first request
    except KnowledgeError as error:
        print(f"action server: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"knowledge index: {len(index.passages)} passages from {len(index.titles)} pages", flush=True)
    build_app().run(args.host, args.port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
