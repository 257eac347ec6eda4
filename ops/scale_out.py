"""Run the scale-out configuration on this machine until Ctrl-C.

    set -a; . deploy/scale-out.env; set +a
    .venvs/rasa/bin/python -m ops.scale_out [--replicas 2] [--action-servers 1]

Rasa replicas (`rasa run`, one Sanic worker each, on loopback) sharing the PostgreSQL
tracker store, the Redis lock store and the RabbitMQ event broker named by
TRACKER_STORE_URL, LOCK_STORE_URL and EVENT_BROKER_URL; the action servers; nginx
(Debian's package) in front of both, listening on BIND_HOST:RASA_PORT; the generator
unless GENERATOR_URL names another OpenAI-compatible server and EMBEDDINGS_URL does not
keep the embeddings on this machine's generator (ops.stack.llm_endpoints). The wiring is
`scale_out_services` below, the same the reliability tests (tests/test_scale_out.py)
and the load benchmarks (bench/load.py, bench/turns.py) run; nginx's configuration comes
from deploy/nginx.conf.j2 (ops/nginx.py). A replica, action server or generator that
exits is started again; logs are in build/logs/scale-out/.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from assistant import config
from ops import nginx, settings, stack
from ops.run import _api_token
from ops.services import Service
from ops.train import latest_model, train

# The shared services of this machine (the test and benchmark defaults); each is
# overridden by the environment variable of the same name.
SCALE_OUT_DEFAULTS = {
    "TRACKER_STORE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "LOCK_STORE_URL": "redis://127.0.0.1:6379/1",
    "EVENT_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
}


def scale_out_env(overrides: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """TRACKER_STORE_URL, LOCK_STORE_URL, EVENT_BROKER_URL: overrides, else the
    environment, else this machine's PostgreSQL, Redis and RabbitMQ. An empty
    EVENT_BROKER_URL in the environment means no event broker."""
    environment = config.ops()
    given = {"TRACKER_STORE_URL": environment.tracker_store_url, "LOCK_STORE_URL": environment.lock_store_url,
             "EVENT_BROKER_URL": environment.event_broker_url}
    env = {name: given[name] or default for name, default in SCALE_OUT_DEFAULTS.items()}
    if environment.event_broker_url == "":
        env["EVENT_BROKER_URL"] = ""
    env.update(overrides or {})
    return env


def scale_out_missing(env: Dict[str, str]) -> Optional[str]:
    """Why the scale-out stack cannot run here (nginx, PostgreSQL, Redis or RabbitMQ
    missing or unreachable), or None."""
    if not (os.path.isfile(nginx.NGINX) and os.access(nginx.NGINX, os.X_OK)):
        return f"nginx is not installed ({nginx.NGINX}); `apt-get install nginx` (Debian's package)"
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(env["TRACKER_STORE_URL"], connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure: no database to use here
        return f"PostgreSQL is not reachable at {_redact(env['TRACKER_STORE_URL'])}: {type(error).__name__}"
    try:
        import redis

        redis.Redis.from_url(env["LOCK_STORE_URL"], socket_timeout=2).ping()
    except Exception as error:  # noqa: BLE001
        return f"Redis is not reachable at {_redact(env['LOCK_STORE_URL'])}: {type(error).__name__}"
    if not env.get("EVENT_BROKER_URL"):
        return None
    try:
        import asyncio

        import aio_pika

        async def amqp() -> None:
            connection = await asyncio.wait_for(aio_pika.connect(env["EVENT_BROKER_URL"]), timeout=5)
            await connection.close()

        asyncio.run(amqp())
    except Exception as error:  # noqa: BLE001
        return f"RabbitMQ is not reachable at {_redact(env['EVENT_BROKER_URL'])}: {type(error).__name__}"
    return None


def _redact(url: str) -> str:
    from urllib.parse import urlparse

    password = urlparse(url).password
    return url.replace(f":{password}@", ":***@", 1) if password else url


@dataclass
class ScaleOut:
    """The scale-out stack's services; `url` is the load balancer customers use."""

    work: Path
    generator: Optional[Service]
    actions: List[Service]
    rasa: List[Service]
    nginx: Service
    url: str
    rasa_urls: List[str]
    rasa_env: Dict[str, str]
    api_token: str
    actions_url: str  # the action servers' load balancer, which the replicas call

    @property
    def services(self) -> List[Service]:
        return [*([self.generator] if self.generator else []), *self.actions, *self.rasa, self.nginx]

    @property
    def stages(self) -> List[List[Service]]:
        """For `running(*stages)`: the back ends together, nginx once they answer."""
        return [[s for s in self.services if s is not self.nginx], [self.nginx]]

    def restart(self, service: Service, timeout: float = settings.STARTUP_TIMEOUT_S) -> None:
        service.stop()
        service.start()
        stack.wait_healthy([service], timeout)


def scale_out_services(
    work: Path,
    model: Path,
    *,
    replicas: int = 2,
    action_servers: int = 1,
    stores: Optional[Dict[str, str]] = None,
    rasa_env: Optional[Dict[str, str]] = None,
    actions_env: Optional[Dict[str, str]] = None,
    generator_env: Optional[Dict[str, str]] = None,
    api_token: Optional[str] = None,
    event_broker: Optional[Dict[str, Any]] = None,
    expose_upstream: bool = False,
    replica_env: Iterable[Dict[str, str]] = (),
    port: Optional[int] = None,
) -> ScaleOut:
    """The scale-out stack on this machine, not started: `with running(*so.stages):`.

    `replicas` Rasa processes (`rasa run`, one Sanic worker each, on loopback) with the
    stores of `scale_out_env(stores)`, `action_servers` action servers, both behind one
    nginx; the generator unless GENERATOR_URL (in actions_env or the environment)
    names another OpenAI-compatible server and EMBEDDINGS_URL does not name the local
    generator (`llm_endpoints`). Rasa's HTTP API is on, behind `api_token`
    (RASA_API_TOKEN, or a new random one). `replica_env` adds variables to the first
    replicas, one dict each. nginx listens on BIND_HOST:`port` (default: a free port).
    """
    shared = scale_out_env(stores)
    if replicas > 1 and not shared.get("LOCK_STORE_URL"):
        raise ValueError("several Rasa replicas need a shared lock store: set LOCK_STORE_URL")
    work.mkdir(parents=True, exist_ok=True)
    token = api_token or config.ops().rasa_api_token or secrets.token_urlsafe(24)
    ports = stack.free_ports(replicas + action_servers + 3)
    rasa_ports, actions_ports = ports[:replicas], ports[replicas:replicas + action_servers]
    lb_port, actions_lb_port, generator_port = ports[-3:]
    lb_port = port or lb_port

    local, llm_urls = stack.llm_endpoints(generator_port, actions_env)
    generator = stack.generator_service(generator_port, work, env=generator_env) if local else None
    actions = [
        stack.actions_service(actions_port, work, env={**(actions_env or {}), **llm_urls},
                              name=f"actions-{i + 1}")
        for i, actions_port in enumerate(actions_ports)
    ]
    endpoints = stack.endpoints_for(actions_lb_port, work, event_broker=event_broker)
    env = {**shared, "SANIC_WORKERS": "1", **(rasa_env or {})}
    extra = list(replica_env)
    rasa = [
        stack.rasa_service(rasa_port, work, model, endpoints, env={**env, **(extra[i] if i < len(extra) else {})},
                           name=f"rasa-{i + 1}", interface="127.0.0.1", extra_args=stack.api_args(token))
        for i, rasa_port in enumerate(rasa_ports)
    ]
    balancer = nginx.nginx_service(
        work, lb_port,
        nginx.nginx_config(work, lb_port, rasa_ports, actions_lb_port, actions_ports, expose_upstream=expose_upstream),
    )
    return ScaleOut(
        work=work, generator=generator, actions=actions, rasa=rasa, nginx=balancer,
        url=f"http://127.0.0.1:{lb_port}", rasa_urls=[f"http://127.0.0.1:{p}" for p in rasa_ports],
        rasa_env=env, api_token=token, actions_url=f"http://127.0.0.1:{actions_lb_port}",
    )


RESTART_DELAY_S = 5.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.scale_out", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="Rasa processes behind nginx")
    parser.add_argument("--action-servers", type=int, default=1)
    args = parser.parse_args(argv)
    stores = scale_out_env()
    missing = scale_out_missing(stores)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    model = latest_model() or train()
    log_dir = settings.LOG_DIR / "scale-out"
    so = scale_out_services(
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
        with stack.running(*so.stages):
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
        try:
            print("stopped.", flush=True)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
