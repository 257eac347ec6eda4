"""Start, health-check and stop the services of the embedded and scale-out stacks.

Used by the run command, the end-to-end and reliability tests and the benchmarks, so
all exercise the same process wiring: each service runs in its own process group with
its log in a file, and is stopped with SIGTERM (then SIGKILL) so a Ctrl-C never leaves
orphans.

The scale-out stack (`scale_out_services`) is the same code and files with other
environment variables: several `rasa run` replicas sharing a PostgreSQL tracker store,
a Redis lock store and a RabbitMQ event broker, behind nginx (Debian's package, run
with a generated configuration in a work folder), the action servers behind the same
nginx, and the generator (or any OpenAI-compatible server named by GENERATOR_URL, with
the embeddings from EMBEDDINGS_URL: `llm_endpoints`).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ops import settings


class ServiceError(RuntimeError):
    """A service exited or did not become healthy in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> List[int]:
    """`count` distinct free ports (all held open until every one is chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def post(url: str, body: bytes, timeout: float = 60) -> Tuple[int, Any]:
    """POST a JSON body; (status, decoded JSON or text), also for HTTP errors."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode(errors="replace")


@dataclass
class Service:
    name: str
    argv: List[str]
    health_url: str
    log_path: Path
    env: Dict[str, str] = field(default_factory=dict)
    process: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=settings.ROOT,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if not self.running():
            return
        assert self.process is not None
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def wait_healthy(services: Iterable[Service], timeout: float) -> None:
    """Wait until every service answers its health URL, failing fast if one exits."""
    pending = list(services)
    deadline = time.monotonic() + timeout
    while pending:
        for service in list(pending):
            if not service.running():
                code = service.process.returncode if service.process else None
                raise ServiceError(
                    f"{service.name} exited with code {code}; last log lines "
                    f"({service.log_path}):\n{service.log_tail()}"
                )
            if service.healthy():
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise ServiceError(f"not healthy after {timeout:.0f} s: {names}")
        if pending:
            time.sleep(0.5)


def generator_service(
    port: int, log_dir: Path, env: Optional[Dict[str, str]] = None, name: str = "generator"
) -> Service:
    return Service(
        name=name,
        argv=[str(settings.GENERATOR_VENV / "bin" / "python"), "-m", "generator"],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log_dir / f"{name}.log",
        env={"GENERATOR_HOST": settings.GENERATOR_HOST, "GENERATOR_PORT": str(port), **(env or {})},
    )


def actions_service(
    port: int, log_dir: Path, env: Optional[Dict[str, str]] = None, name: str = "actions"
) -> Service:
    return Service(
        name=name,
        argv=[
            str(settings.RASA_VENV / "bin" / "python"), "-m", "actions.server",
            "--host", settings.ACTIONS_HOST, "--port", str(port),
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log_dir / f"{name}.log",
        env=env or {},
    )


def _is_local_generator(url: str) -> bool:
    """`url` names the CPU generator this machine's stack runs: loopback at GENERATOR_PORT
    (as deploy/scale-out.env writes EMBEDDINGS_URL)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.port == settings.GENERATOR_PORT
    except ValueError:
        return False


def llm_endpoints(port: int, env: Optional[Dict[str, str]] = None) -> Tuple[bool, Dict[str, str]]:
    """Whether the stack starts the CPU generator (on `port`), and the action server's
    GENERATOR_URL and EMBEDDINGS_URL.

    Chat: GENERATOR_URL (in `env`, else the environment) names another OpenAI-compatible
    server (vLLM); unset, the CPU generator. Embeddings: EMBEDDINGS_URL unset follows chat;
    on loopback at GENERATOR_PORT it is the CPU generator (started for it, on `port`);
    anything else is another server. So `GENERATOR_URL=http://vllm…/v1` with
    `EMBEDDINGS_URL=http://127.0.0.1:8000/v1` sends chat to vLLM and embeddings here."""
    env = env or {}
    chat = env.get("GENERATOR_URL") or os.environ.get("GENERATOR_URL", "")
    embeddings = env.get("EMBEDDINGS_URL") or os.environ.get("EMBEDDINGS_URL", "")
    local_url = f"http://127.0.0.1:{port}/v1"
    local_embeddings = bool(embeddings) and _is_local_generator(embeddings)
    urls = {"GENERATOR_URL": chat or local_url}
    if embeddings:
        urls["EMBEDDINGS_URL"] = local_url if local_embeddings else embeddings
    return (not chat or local_embeddings), urls


def api_args(token: str) -> List[str]:
    """`rasa run` options for Rasa's HTTP API behind `token`. One argument `--auth-token=…`,
    so a token that starts with "-" (token_urlsafe makes one now and then) is not
    taken for an option."""
    return ["--enable-api", f"--auth-token={token}"]


def rasa_service(
    port: int,
    log_dir: Path,
    model: Path,
    endpoints: Path,
    credentials: Path = settings.ROOT / "credentials.yml",
    env: Optional[Dict[str, str]] = None,
    extra_args: Iterable[str] = (),
    name: str = "rasa",
    interface: Optional[str] = None,
) -> Service:
    return Service(
        name=name,
        argv=[
            str(settings.RASA_VENV / "bin" / "rasa"), "run",
            "--model", str(model),
            "--endpoints", str(endpoints),
            "--credentials", str(credentials),
            "--interface", interface or settings.BIND_HOST,
            "--port", str(port),
            # Browsers may call Rasa only from these web origins (CORS_ORIGINS).
            "--cors", *allowed_origins(),
            *extra_args,
        ],
        health_url=f"http://127.0.0.1:{port}/",
        log_path=log_dir / f"{name}.log",
        env=env or {},
    )


def web_service(port: int, log_dir: Path, env: Optional[Dict[str, str]] = None) -> Service:
    """The demo page with the chat widget (ops/web.py)."""
    return Service(
        name="web",
        argv=[
            str(settings.RASA_VENV / "bin" / "python"), "-m", "ops", "web",
            "--host", settings.BIND_HOST, "--port", str(port),
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log_dir / "web.log",
        env=env or {},
    )


def console_service(port: int, log_dir: Path, env: Optional[Dict[str, str]] = None) -> Service:
    """The agent console (console/app.py): support staff answer handed-off conversations."""
    return Service(
        name="console",
        argv=[
            str(settings.RASA_VENV / "bin" / "python"), "-m", "console", "serve",
            "--host", settings.BIND_HOST, "--port", str(port),
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log_dir / "console.log",
        env=env or {},
    )


def allowed_origins() -> List[str]:
    from addons.channels import allowed_origins as origins

    return origins()


def endpoints_for(
    actions_port: int, out_dir: Path, event_broker: Optional[Dict[str, Any]] = None
) -> Path:
    """endpoints.yml as it is, or a copy in out_dir whose action URL uses actions_port
    (and whose event_broker section has these extra options, e.g. exchange_name)."""
    import yaml

    source = settings.ROOT / "endpoints.yml"
    endpoints = yaml.safe_load(source.read_text())
    url = f"http://127.0.0.1:{actions_port}/webhook"
    if endpoints["action_endpoint"]["url"] == url and not event_broker:
        return source
    endpoints["action_endpoint"]["url"] = url
    if event_broker:
        endpoints["event_broker"] = {**(endpoints.get("event_broker") or {}), **event_broker}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "endpoints.yml"
    target.write_text(yaml.safe_dump(endpoints))
    return target


def stop_all(services: Iterable[Service]) -> None:
    for service in reversed(list(services)):
        service.stop()


# --- Scale-out: Rasa replicas behind nginx, shared stores -----------------------------

NGINX = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"

# The shared services of this machine (the test and benchmark defaults); each is
# overridden by the environment variable of the same name.
SCALE_OUT_DEFAULTS = {
    "TRACKER_STORE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "LOCK_STORE_URL": "redis://127.0.0.1:6379/1",
    "EVENT_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
}

# What the action servers' load balancer answers when no action server can run an
# action (connection refused, crashed, 5xx), by action; any other action gets the error,
# as it would without the load balancer (Rasa logs it and drops the action's events).
# - action_llm_reply: the polite template, as the action itself sends when the generator
#   fails, instead of no answer.
# - action_session_start: Rasa's own session start (SessionStarted, action_listen),
#   without the project's carry-over of a handoff pause. Without it a new conversation
#   has no session and no action_listen, and the policies then predict action_llm_reply
#   again and again until Rasa's circuit breaker stops them.
DEGRADED_ACTIONS: Dict[str, Dict[str, Any]] = {
    "action_llm_reply": {
        "events": [],
        "responses": [
            {"response": "utter_llm_fallback", "source": "fallback", "llm_error": "action server unavailable"}
        ],
    },
    "action_session_start": {
        "events": [{"event": "session_started"}, {"event": "action", "name": "action_listen"}],
        "responses": [],
    },
}


def scale_out_env(overrides: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """TRACKER_STORE_URL, LOCK_STORE_URL, EVENT_BROKER_URL: overrides, else the
    environment, else this machine's PostgreSQL, Redis and RabbitMQ. An empty
    EVENT_BROKER_URL in the environment means no event broker."""
    env = {name: os.environ.get(name) or default for name, default in SCALE_OUT_DEFAULTS.items()}
    if os.environ.get("EVENT_BROKER_URL") == "":
        env["EVENT_BROKER_URL"] = ""
    env.update(overrides or {})
    return env


def scale_out_missing(env: Dict[str, str]) -> Optional[str]:
    """Why the scale-out stack cannot run here (nginx, PostgreSQL, Redis or RabbitMQ
    missing or unreachable), or None."""
    if not (os.path.isfile(NGINX) and os.access(NGINX, os.X_OK)):
        return f"nginx is not installed ({NGINX}); `apt-get install nginx` (Debian's package)"
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


RATE_LIMITED_JSON = '{"error": "Too many requests: please wait a moment and try again.", "retry_after": %d}'


def nginx_rate_limit(limits: Any = None) -> Tuple[str, str]:
    """The per-client limit of addons/rate_limit.py (RATE_LIMIT_CLIENT_PER_MIN, _BURST,
    RATE_LIMIT_EXEMPT) as nginx directives for the http and the server block, as
    deploy/nginx.conf has them; empty when that limit is off. One budget per client
    address for all replicas; 429 with Retry-After and a JSON error, as Rasa's own."""
    import math

    from addons.rate_limit import Settings

    limits = limits or Settings.from_env()
    if limits.client_per_min <= 0:
        return "", ""
    exempt = "".join(f"        {net} 1;\n" for net in limits.exempt)
    retry = max(1, math.ceil(60 / limits.client_per_min))
    http = f"""
    # The per-client rate limit. Not limited (an empty key): RATE_LIMIT_EXEMPT, and
    # callers with an Authorization header (the bank's back end; Rasa checks its token
    # and counts a wrong one against the caller's address).
    geo $rate_limit_exempt {{
        default 0;
{exempt}    }}
    map "$rate_limit_exempt$http_authorization" $rate_limit_key {{
        "0" $binary_remote_addr;
        default "";
    }}
    limit_req_zone $rate_limit_key zone=per_client:10m rate={max(1, round(limits.client_per_min))}r/m;
    limit_req_status 429;
"""
    server = f"""        limit_req zone=per_client burst={limits.client_burst} nodelay;
        error_page 429 = @rate_limited;
        location @rate_limited {{
            default_type application/json;
            add_header Retry-After {retry} always;
            return 429 '{RATE_LIMITED_JSON % retry}';
        }}
"""
    return http, server


def nginx_config(
    work_dir: Path,
    port: int,
    rasa_ports: List[int],
    actions_port: Optional[int] = None,
    actions_ports: Iterable[int] = (),
    listen: Optional[str] = None,
    expose_upstream: bool = False,
    rate_limit: Any = None,
) -> str:
    """nginx in front of the Rasa replicas (and the action servers), as deploy/nginx.conf
    does in compose: REST and the HTTP API round-robin, socket.io sticky by client
    address. A replica that refuses connections is skipped (nginx passes the request to
    the next one); a request it accepted and then failed gets 502, which the client
    retries. `expose_upstream` adds an X-Upstream header naming the replica (tests).
    `rate_limit` (addons/rate_limit.py Settings; default: from the environment) sets the
    per-client limit (`nginx_rate_limit`)."""
    tmp = work_dir / "nginx-tmp"
    limit_http, limit_server = nginx_rate_limit(rate_limit)
    rasa = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in rasa_ports)
    sticky = "\n".join(f"        server 127.0.0.1:{p};" for p in rasa_ports)
    upstream_header = "        add_header X-Upstream $upstream_addr always;\n" if expose_upstream else ""
    actions = ""
    if actions_port is not None:
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in actions_ports)
        degraded = "\n".join(
            f"""        "~\\"next_action\\"\\s*:\\s*\\"{name}\\"" '{json.dumps(body)}';"""
            for name, body in DEGRADED_ACTIONS.items()
        )
        actions = f"""
    # The action servers. Rasa calls one URL; a refused connection goes to the next
    # server. When none can run the action, the degraded answers of DEGRADED_ACTIONS
    # (ops/stack.py). Rasa names the action in the JSON body ("next_action"), which is
    # kept in memory to be read.
    map $request_body $degraded_action {{
        default "";
{degraded}
    }}
    upstream actions {{
{servers}
        keepalive 16;
        keepalive_timeout 4s;
    }}
    server {{
        listen 127.0.0.1:{actions_port};
        client_max_body_size 10m;
        client_body_buffer_size 10m;
        client_body_in_single_buffer on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_connect_timeout 2s;
        # Rasa waits up to 300 s for an action.
        proxy_read_timeout 300s;
        proxy_max_temp_file_size 0;
        proxy_intercept_errors on;
        location / {{
            proxy_pass http://actions;
            error_page 500 502 503 504 = @degraded;
        }}
        location @degraded {{
            default_type application/json;
            if ($degraded_action != "") {{
                return 200 $degraded_action;
            }}
            return 502;
        }}
    }}
"""
    return f"""# Generated by ops/stack.py (scale_out_services) from the ideas of deploy/nginx.conf.
daemon off;
worker_processes 1;
pid {work_dir}/nginx.pid;
error_log {work_dir}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{limit_http}
    upstream rasa {{
{rasa}
        # Reused connections to the replicas; closed before Sanic's 5 s keep-alive
        # ends, so a request never goes out on a connection the replica is closing.
        keepalive 64;
        keepalive_timeout 4s;
    }}
    upstream rasa_sticky {{
        ip_hash;
{sticky}
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen {listen or settings.BIND_HOST}:{port};
        # REST messages are at most MAX_MESSAGE_CHARS (4000) characters; model uploads
        # through PUT /model send a path, not the file.
        client_max_body_size 1m;
        client_body_buffer_size 1m;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_connect_timeout 2s;
        # An LLM turn on CPUs takes seconds; Rasa waits for the action server up to 300 s.
        proxy_read_timeout 300s;
        proxy_max_temp_file_size 0;
{upstream_header}{limit_server}
        location = /lb-health {{
            default_type text/plain;
            return 200 "ok\n";
        }}
        location /socket.io/ {{
            proxy_pass http://rasa_sticky;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
        location / {{
            proxy_pass http://rasa;
            proxy_set_header Connection "";
        }}
    }}
{actions}}}
"""


def nginx_service(work_dir: Path, port: int, config: str, name: str = "nginx") -> Service:
    work_dir.mkdir(parents=True, exist_ok=True)
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work_dir / "nginx-tmp" / folder).mkdir(parents=True, exist_ok=True)
    conf = work_dir / f"{name}.conf"
    conf.write_text(config)
    return Service(
        name=name,
        # -e: the error log before the configuration is read (else /var/log/nginx).
        argv=[NGINX, "-p", str(work_dir), "-c", str(conf), "-e", str(work_dir / f"{name}-error.log")],
        health_url=f"http://127.0.0.1:{port}/lb-health",
        log_path=work_dir / f"{name}.log",
    )


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

    def start(self, timeout: float = settings.STARTUP_TIMEOUT_S) -> None:
        """Start everything (the back ends together, nginx once they answer)."""
        backends = [s for s in self.services if s is not self.nginx]
        for service in backends:
            service.start()
        wait_healthy(backends, timeout)
        self.nginx.start()
        wait_healthy([self.nginx], 30)

    def stop(self) -> None:
        stop_all(self.services)

    def restart(self, service: Service, timeout: float = settings.STARTUP_TIMEOUT_S) -> None:
        service.stop()
        service.start()
        wait_healthy([service], timeout)


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
    """The scale-out stack on this machine (not started: call .start()).

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
    token = api_token or os.environ.get("RASA_API_TOKEN") or secrets.token_urlsafe(24)
    ports = free_ports(replicas + action_servers + 3)
    rasa_ports, actions_ports = ports[:replicas], ports[replicas:replicas + action_servers]
    lb_port, actions_lb_port, generator_port = ports[-3:]
    lb_port = port or lb_port

    local, llm_urls = llm_endpoints(generator_port, actions_env)
    generator = generator_service(generator_port, work, env=generator_env) if local else None
    actions = [
        actions_service(actions_port, work, env={**(actions_env or {}), **llm_urls},
                        name=f"actions-{i + 1}")
        for i, actions_port in enumerate(actions_ports)
    ]
    endpoints = endpoints_for(actions_lb_port, work, event_broker=event_broker)
    env = {**shared, "SANIC_WORKERS": "1", **(rasa_env or {})}
    extra = list(replica_env)
    rasa = [
        rasa_service(rasa_port, work, model, endpoints, env={**env, **(extra[i] if i < len(extra) else {})},
                     name=f"rasa-{i + 1}", interface="127.0.0.1",
                     extra_args=api_args(token))
        for i, rasa_port in enumerate(rasa_ports)
    ]
    nginx = nginx_service(
        work, lb_port,
        nginx_config(work, lb_port, rasa_ports, actions_lb_port, actions_ports, expose_upstream=expose_upstream),
    )
    return ScaleOut(
        work=work, generator=generator, actions=actions, rasa=rasa, nginx=nginx,
        url=f"http://127.0.0.1:{lb_port}", rasa_urls=[f"http://127.0.0.1:{p}" for p in rasa_ports],
        rasa_env=env, api_token=token, actions_url=f"http://127.0.0.1:{actions_lb_port}",
    )
