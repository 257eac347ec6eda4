"""Processes of the stacks: start, health-check and stop, and `running(...)` that does all three.

Each service runs in its own process group with its log in a file and is stopped with
SIGTERM (then SIGKILL), so a Ctrl-C or a failed start never leaves orphans. The run
command, the transcripts, the benchmarks and the tests all start their services with
`running`; ops/stack.py says what the services are.
"""
from __future__ import annotations

import contextlib
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
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

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
    cwd: Optional[Path] = None  # where it runs; None: the repository root

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd or settings.ROOT,
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


def stop_all(services: Iterable[Service]) -> None:
    for service in reversed(list(services)):
        service.stop()


@contextlib.contextmanager
def running(*stages: Sequence[Service], timeout: float = settings.STARTUP_TIMEOUT_S) -> Iterator[List[Service]]:
    """Start the services, wait until every one is healthy, and stop them all on leaving
    (last started first), also when a start fails or the body raises.

    Each stage (a list of services) is started and waited for before the next one: the
    scale-out stack starts nginx once the replicas behind it answer. ServiceError when
    one exits or is not healthy within `timeout` seconds."""
    started: List[Service] = []
    try:
        for stage in stages:
            for service in stage:
                started.append(service)
                service.start()
            wait_healthy(stage, timeout)
        yield started
    finally:
        stop_all(started)
