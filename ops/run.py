"""Run the embedded stack: generator, action server and Rasa, until Ctrl-C."""
from __future__ import annotations

import signal
import time

from ops import settings, stack
from ops.train import latest_model, train


def run() -> int:
    for venv in (settings.RASA_VENV, settings.GENERATOR_VENV):
        if not venv.is_dir():
            print(f"{venv} is missing: run `make setup` first")
            return 2
    model = latest_model() or train()
    log_dir = settings.LOG_DIR
    services = [
        stack.generator_service(settings.GENERATOR_PORT, log_dir),
        stack.actions_service(settings.ACTIONS_PORT, log_dir),
        stack.rasa_service(
            settings.RASA_PORT, log_dir, model, settings.ROOT / "endpoints.yml"
        ),
    ]
    stopping = False

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"starting generator, action server and Rasa (model {model.name}); logs in {log_dir}")
    try:
        for service in services:
            service.start()
        stack.wait_healthy(services, settings.STARTUP_TIMEOUT_S)
        print(
            "\nThe assistant is up.\n"
            f"  REST:        POST http://{settings.BIND_HOST}:{settings.RASA_PORT}/webhooks/rest/webhook"
            ' {"sender": "me", "message": "hi"}\n'
            f"  socket.io:   http://{settings.BIND_HOST}:{settings.RASA_PORT}/socket.io\n"
            "  shell:       make shell   (in another terminal)\n"
            f"  generator:   http://{settings.BIND_HOST}:{settings.GENERATOR_PORT}/v1\n"
            "Press Ctrl-C to stop.",
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
    finally:
        print("stopping ...", flush=True)
        stack.stop_all(services)
        print("stopped.")
