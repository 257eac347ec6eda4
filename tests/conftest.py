"""Shared fixtures: the real three-service stack on free loopback ports."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import sqlalchemy as sa

from ops import settings, stack
from ops.stack import free_port
from ops.train import latest_model

API_TOKEN = "test-token"
# The REST channel's bearer token where a test module turns it on (`rasa_env`): the bank's
# back end, trusted to name the customer in metadata.customer_id.
REST_TOKEN = "test-rest-token"
# Short enough to keep the suite quick, long enough for a 64-token CPU reply.
GENERATOR_TIMEOUT_S = 20


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_available() -> bool:
    try:
        with sa.create_engine(POSTGRES_URL).connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except Exception:  # any failure means: no server to test against here
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    if not _postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def bank_url(request, tmp_path):
    """An empty bank database (assistant/bank/) on SQLite, then on PostgreSQL."""
    from assistant import bank

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bank.db'}"
        return
    if not _postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    engine = sa.create_engine(POSTGRES_URL)

    def drop() -> None:  # the tables and the migrations' record of them (assistant/bank/migrate.py)
        bank.metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))

    drop()
    yield POSTGRES_URL
    drop()
    engine.dispose()



class RedisServer:
    """A Redis of a test's own for the lock store (`redis-server` on a free port): the
    tests kill it and start it again (on the same port, empty: no persistence) without
    touching the machine's shared Redis, which other tests use."""

    def __init__(self, work: Path) -> None:
        self.port = stack.free_port()
        self.work = work
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/1"

    def start(self, timeout: float = 10) -> None:
        with (self.work / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.work)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().ping()
                return
            except Exception:  # noqa: BLE001 - not listening yet
                assert self.process.poll() is None, f"redis-server exited: {(self.work / 'redis.log').read_text()}"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=1, socket_timeout=2)

    def wait_settled(self, lock_lifetime: float) -> None:
        """Until Redis has been up for longer than a lock's lifetime: before that the
        lock store makes turns wait (addons/lock_store.py)."""
        while self.client().info("server")["uptime_in_seconds"] < lock_lifetime + 2:
            time.sleep(0.5)


@dataclass
class Stack:
    generator: stack.Service
    actions: stack.Service
    rasa: stack.Service
    rasa_url: str
    db_path: Path
    bank_url: str = ""  # the action server's bank database (seeded with the demo customers)
    rest_token: str = ""  # REST_CHANNEL_TOKEN of this Rasa, sent with every message when set

    def say(self, sender: str, text: str, timeout: float = 90, customer: Optional[str] = None) -> Tuple[int, Any]:
        """One REST turn, as the bank's back end sends it: with the bearer token when this
        Rasa requires one, naming `customer` (metadata.customer_id) when given."""
        body: Dict[str, Any] = {"sender": sender, "message": text}
        if customer:
            body["metadata"] = {"customer_id": customer}
        return rest_post(self.rasa_url, body, self.rest_token, timeout)

    def events(self, sender: str) -> List[Dict[str, Any]]:
        """The conversation as Rasa's SQL tracker store holds it, in insertion order."""
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute(
                "SELECT type_name, data FROM events WHERE sender_id = ? ORDER BY id", (sender,)
            ).fetchall()
        return [dict(json.loads(data), event=kind) for kind, data in rows]

    def last_bot_event(self, sender: str) -> Dict[str, Any]:
        return [e for e in self.events(sender) if e["event"] == "bot"][-1]

    def restart(self, service: stack.Service) -> None:
        service.stop()
        service.start()
        stack.wait_healthy([service], settings.STARTUP_TIMEOUT_S)


@pytest.fixture(scope="session")
def trained_model() -> Path:
    model = latest_model()
    if model is None:
        pytest.fail("no trained model in models/: run `make train` (make test does)")
    return model


@pytest.fixture(scope="session")
def domain_responses() -> Dict[str, List[str]]:
    from rasa.shared.core.domain import Domain

    domain = Domain.load(str(settings.ROOT / "domain"))
    return {name: [v.get("text", "") for v in variants] for name, variants in domain.responses.items()}


def rest_post(rasa_url: str, body: Dict[str, Any], token: str = "", timeout: float = 90) -> Tuple[int, Any]:
    """POST to the REST channel, with `Authorization: Bearer token` when given."""
    request = urllib.request.Request(
        f"{rasa_url}/webhooks/rest/webhook", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
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


@pytest.fixture(scope="module")
def rasa_env() -> Dict[str, str]:
    """Extra environment of the module's Rasa; a test module overrides it, e.g. to require
    REST_CHANNEL_TOKEN (then Stack.say sends it) or SOCKETIO_JWT_KEY. Default: neither,
    as `make run` leaves REST: anonymous callers, nobody identified."""
    return {}


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory, trained_model, rasa_env) -> Stack:
    work = tmp_path_factory.mktemp("stack")
    gen_port, act_port, rasa_port = free_port(), free_port(), free_port()
    endpoints_path = stack.endpoints_for(act_port, work)
    db_path = work / "tracker.db"
    from assistant import bank

    bank_url = f"sqlite:///{work / 'bank.db'}"
    bank.seed(bank_url)

    services = [
        stack.generator_service(gen_port, work),
        stack.actions_service(
            act_port,
            work,
            env={
                "GENERATOR_URL": f"http://127.0.0.1:{gen_port}/v1",
                "GENERATOR_TIMEOUT_S": str(GENERATOR_TIMEOUT_S),
                "BANK_DB_URL": bank_url,
            },
        ),
        stack.rasa_service(
            rasa_port,
            work,
            trained_model,
            endpoints_path,
            env={"TRACKER_STORE_URL": f"sqlite:///{db_path}", **rasa_env},
            extra_args=["--enable-api", "--auth-token", API_TOKEN],
        ),
    ]
    with stack.running(services):
        yield Stack(*services, rasa_url=f"http://127.0.0.1:{rasa_port}", db_path=db_path, bank_url=bank_url,
                    rest_token=rasa_env.get("REST_CHANNEL_TOKEN", ""))


def bank_rows(url: str) -> Dict[str, List[tuple]]:
    """Every row of every table of the bank database, to compare before and after."""
    from assistant import bank

    engine = bank.sync_engine(url)
    try:
        with engine.connect() as connection:
            return {table.name: sorted((tuple(row) for row in connection.execute(sa.select(table))), key=repr)
                    for table in bank.metadata.sorted_tables}
    finally:
        engine.dispose()


def metadata(event: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return (event or {}).get("metadata") or {}
