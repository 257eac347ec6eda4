"""Start, health-check and stop the three services of the embedded stack.

Used by the run command and by the end-to-end tests, so both exercise the same
process wiring: each service runs in its own process group with its log in a file,
and is stopped with SIGTERM (then SIGKILL) so a Ctrl-C never leaves orphans.
"""
from __future__ import annotations

import json
import os
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


def generator_service(port: int, log_dir: Path, env: Optional[Dict[str, str]] = None) -> Service:
    return Service(
        name="generator",
        argv=[str(settings.GENERATOR_VENV / "bin" / "python"), "-m", "generator"],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log_dir / "generator.log",
        env={"GENERATOR_HOST": settings.BIND_HOST, "GENERATOR_PORT": str(port), **(env or {})},
    )


def actions_service(port: int, log_dir: Path, env: Optional[Dict[str, str]] = None) -> Service:
    return Service(
        name="actions",
        argv=[
            str(settings.RASA_VENV / "bin" / "python"), "-m", "actions.server",
            "--host", settings.BIND_HOST, "--port", str(port),
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=log_dir / "actions.log",
        env=env or {},
    )


def rasa_service(
    port: int,
    log_dir: Path,
    model: Path,
    endpoints: Path,
    credentials: Path = settings.ROOT / "credentials.yml",
    env: Optional[Dict[str, str]] = None,
    extra_args: Iterable[str] = (),
) -> Service:
    return Service(
        name="rasa",
        argv=[
            str(settings.RASA_VENV / "bin" / "rasa"), "run",
            "--model", str(model),
            "--endpoints", str(endpoints),
            "--credentials", str(credentials),
            "--interface", settings.BIND_HOST,
            "--port", str(port),
            # Browsers may call Rasa only from these web origins (CORS_ORIGINS).
            "--cors", *allowed_origins(),
            *extra_args,
        ],
        health_url=f"http://127.0.0.1:{port}/",
        log_path=log_dir / "rasa.log",
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


def allowed_origins() -> List[str]:
    from addons.channels import allowed_origins as origins

    return origins()


def endpoints_for(actions_port: int, out_dir: Path) -> Path:
    """endpoints.yml as it is, or a copy in out_dir whose action URL uses actions_port."""
    import yaml

    source = settings.ROOT / "endpoints.yml"
    endpoints = yaml.safe_load(source.read_text())
    url = f"http://127.0.0.1:{actions_port}/webhook"
    if endpoints["action_endpoint"]["url"] == url:
        return source
    endpoints["action_endpoint"]["url"] = url
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "endpoints.yml"
    target.write_text(yaml.safe_dump(endpoints))
    return target


def stop_all(services: Iterable[Service]) -> None:
    for service in reversed(list(services)):
        service.stop()
