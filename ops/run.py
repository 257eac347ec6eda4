"""Run the embedded stack: generator, action server and Rasa, until Ctrl-C."""
from __future__ import annotations

import secrets
import signal
import time

from assistant import config
from ops import settings, stack
from ops.train import latest_model, train


def _api_token() -> str:
    from ops.lifecycle import TOKEN_FILE

    if config.ops().rasa_api_token:
        return config.ops().rasa_api_token
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    TOKEN_FILE.touch(mode=0o600)
    TOKEN_FILE.chmod(0o600)
    token = secrets.token_urlsafe(24)
    TOKEN_FILE.write_text(token)
    return token


def _jwt_env() -> dict:
    """SOCKETIO_JWT_KEY for Rasa and the demo page: the environment's, or a new one for this
    run. The demo page signs its visitors' tokens with it (the demo customer's sign-in,
    ops/web.py); without it the socket.io channel would have no identified customer."""
    return {"SOCKETIO_JWT_KEY": config.ops().socketio_jwt_key or secrets.token_urlsafe(32)}


def run() -> int:
    for venv in (settings.RASA_VENV, settings.GENERATOR_VENV):
        if not venv.is_dir():
            print(f"{venv} is missing: run `make setup` first")
            return 2
    model = latest_model() or train(quiet=True)  # the first run: one line, the output in build/logs/setup/
    log_dir = settings.LOG_DIR
    # An external OpenAI-compatible server (vLLM, say) replaces the local generator, unless
    # EMBEDDINGS_URL keeps the embeddings on it (ops/stack.py, llm_endpoints).
    needs_local, llm_urls = stack.llm_endpoints(settings.GENERATOR_PORT)
    local = [stack.generator_service(settings.GENERATOR_PORT, log_dir)] if needs_local else []
    generator_url = llm_urls["GENERATOR_URL"]
    jwt_env = _jwt_env()
    api_token = _api_token()
    services = [
        *local,
        stack.actions_service(settings.ACTIONS_PORT, log_dir, env=llm_urls),
        stack.rasa_service(
            settings.RASA_PORT, log_dir, model, stack.endpoints_for(settings.ACTIONS_PORT, log_dir),
            # Rasa's HTTP API (model hot-swap, trackers) behind a token: RASA_API_TOKEN, or
            # a fresh one in build/rasa-api-token that `ops promote` and `ops rollback` read.
            extra_args=stack.api_args(api_token),
            env=jwt_env,
        ),
        stack.web_service(settings.WEB_PORT, log_dir, env=jwt_env),
        # The agent console calls Rasa's API with the same token (console/rasa_api.py).
        stack.console_service(settings.CONSOLE_PORT, log_dir, env={
            "RASA_API_TOKEN": api_token, "CONSOLE_RASA_URL": f"http://127.0.0.1:{settings.RASA_PORT}"}),
    ]
    stopping = up = False

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True
        if not up:  # still starting: leave the health wait at once
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)
    names = ", ".join(service.name for service in services)
    print(f"starting {names} (model {model.name}); logs in {log_dir}", flush=True)
    try:
        with stack.running(services):
            up = True
            print(
                "\nThe assistant is up.\n"
                f"  chat page:   http://localhost:{settings.WEB_PORT}/   (the web chat widget)\n"
                f"  agents:      http://localhost:{settings.CONSOLE_PORT}/   (the agent console; accounts: "
                "python -m console agent-add NAME)\n"
                f"  REST:        POST http://{settings.BIND_HOST}:{settings.RASA_PORT}/webhooks/rest/webhook"
                ' {"sender": "me", "message": "hi"}\n'
                f"  socket.io:   http://{settings.BIND_HOST}:{settings.RASA_PORT}/socket.io\n"
                "  shell:       make shell   (in another terminal)\n"
                f"  generator:   {generator_url}\n"
                + (f"  embeddings:  {llm_urls['EMBEDDINGS_URL']}\n" if "EMBEDDINGS_URL" in llm_urls else "")
                + "Press Ctrl-C to stop.",
                flush=True,
            )
            while not stopping:
                for service in services:
                    if not service.running():
                        print(f"{service.name} stopped unexpectedly:\n{service.log_tail()}")
                        return 1
                time.sleep(0.5)
            return 0
    except stack.ServiceError as error:
        print(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        # Stopped by now (leaving `running`): the terminal or a pipe may already be gone,
        # and printing fail.
        try:
            print("stopped.", flush=True)
        except OSError:
            pass
