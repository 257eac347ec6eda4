"""Run the scale-out configuration on this machine until Ctrl-C.

    set -a; . deploy/scale-out.env; set +a
    .venvs/rasa/bin/python -m ops.scale_out [--replicas 2] [--action-servers 1]

Rasa replicas (`rasa run`, one Sanic worker each, on loopback) sharing the PostgreSQL
tracker store, the Redis lock store and the RabbitMQ event broker named by
TRACKER_STORE_URL, LOCK_STORE_URL and EVENT_BROKER_URL; the action servers; nginx
(Debian's package) in front of both, listening on BIND_HOST:RASA_PORT; the generator
unless GENERATOR_URL names another OpenAI-compatible server and EMBEDDINGS_URL does not
keep the embeddings on this machine's generator (ops.stack.llm_endpoints). The wiring is
ops.stack.scale_out_services, the same the reliability tests (tests/test_scale_out.py)
and the load benchmark (bench/load.py) run. A replica, action server or generator that
exits is started again; logs are in build/logs/scale-out/.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Dict

from ops import settings, stack
from ops.run import _api_token
from ops.train import latest_model, train

RESTART_DELAY_S = 5.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.scale_out", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="Rasa processes behind nginx")
    parser.add_argument("--action-servers", type=int, default=1)
    args = parser.parse_args(argv)
    stores = stack.scale_out_env()
    missing = stack.scale_out_missing(stores)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    model = latest_model() or train()
    log_dir = settings.LOG_DIR / "scale-out"
    so = stack.scale_out_services(
        log_dir, model, replicas=args.replicas, action_servers=args.action_servers,
        api_token=_api_token(), port=settings.RASA_PORT,
    )
    stopping = up = False

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True
        if not up:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)
    print(f"starting {', '.join(s.name for s in so.services)} (model {model.name}); logs in {log_dir}", flush=True)
    try:
        so.start()
        up = True
        print(f"\nUp: REST POST http://{settings.BIND_HOST}:{settings.RASA_PORT}/webhooks/rest/webhook, "
              f"socket.io http://{settings.BIND_HOST}:{settings.RASA_PORT}/socket.io\nPress Ctrl-C to stop.",
              flush=True)
        down_since: Dict[str, float] = {}
        while not stopping:
            for service in so.services:
                if service.running():
                    down_since.pop(service.name, None)
                elif service is so.nginx:
                    print(f"nginx stopped:\n{service.log_tail()}", flush=True)
                    return 1
                elif service.name not in down_since:
                    down_since[service.name] = time.monotonic()
                    print(f"{service.name} exited ({service.process.returncode}); starting it again in "
                          f"{RESTART_DELAY_S:.0f} s", flush=True)
                elif time.monotonic() - down_since[service.name] > RESTART_DELAY_S:
                    del down_since[service.name]
                    service.start()
            time.sleep(0.5)
        return 0
    except stack.ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        so.stop()
        try:
            print("stopped.", flush=True)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
