"""The services of the embedded stack: the generator, the action server, Rasa, the demo
page, and the endpoints.yml that wires them.

Used by the run command, the end-to-end and reliability tests and the benchmarks, so all
exercise the same process wiring; `running(...)` (ops/services.py) starts them, waits
until they are healthy and stops them. The scale-out stack (ops/scale_out.py) is the
same services with other environment variables, behind nginx (ops/nginx.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from assistant import config
from ops import settings
# The process machinery, used through this module by the stacks' callers.
from ops.services import (  # noqa: F401
    Service,
    ServiceError,
    free_port,
    free_ports,
    post,
    running,
    stop_all,
    wait_healthy,
)


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
    environment = config.ops()
    chat = env.get("GENERATOR_URL") or environment.generator_url
    embeddings = env.get("EMBEDDINGS_URL") or environment.embeddings_url
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
    """CORS_ORIGINS as the channels read it (assistant/config.py)."""
    return list(config.channels().cors_origins)


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
