"""``python -m generator``: serve the OpenAI-compatible API with uvicorn (one worker).

One process on purpose: the models are loaded once and every conversation decodes in
one continuous batch on one thread (generator.scheduler); scale out with more
processes behind a load balancer, or with vLLM.
"""

from __future__ import annotations

import sys

import uvicorn

from .app import create_app
from .logs import configure as configure_logging
from .settings import Settings


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"generator: bad setting: {exc}", file=sys.stderr)
        return 2
    log_config = configure_logging(settings.log_format, settings.log_level)
    failed = False
    server: uvicorn.Server | None = None

    def stop_on_load_failure(_exc: BaseException) -> None:
        nonlocal failed
        failed = True
        if server is not None:
            server.should_exit = True  # a server that can never be ready should not linger

    app = create_app(settings, on_load_failure=stop_on_load_failure)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, workers=1,
                            log_level=settings.log_level, log_config=log_config, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    server.run()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
