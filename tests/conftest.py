"""Shared fixtures: the real three-service stack on free loopback ports."""
from __future__ import annotations

import json
import os
import sqlite3
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import sqlalchemy as sa

from ops import settings, stack
from ops.stack import free_port, post
from ops.train import latest_model

API_TOKEN = "test-token"
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
    """An empty bank database (actions/bank.py) on SQLite, then on PostgreSQL."""
    from actions import bank

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bank.db'}"
        return
    if not _postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    engine = sa.create_engine(POSTGRES_URL)
    bank.metadata.drop_all(engine)
    yield POSTGRES_URL
    bank.metadata.drop_all(engine)
    engine.dispose()



@dataclass
class Stack:
    generator: stack.Service
    actions: stack.Service
    rasa: stack.Service
    rasa_url: str
    db_path: Path
    bank_url: str = ""  # the action server's bank database (seeded with the demo customers)

    def say(self, sender: str, text: str, timeout: float = 90) -> Tuple[int, Any]:
        body = json.dumps({"sender": sender, "message": text}).encode()
        return post(f"{self.rasa_url}/webhooks/rest/webhook", body, timeout)

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


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory, trained_model) -> Stack:
    work = tmp_path_factory.mktemp("stack")
    gen_port, act_port, rasa_port = free_port(), free_port(), free_port()
    endpoints_path = stack.endpoints_for(act_port, work)
    db_path = work / "tracker.db"
    from actions import bank

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
            env={"TRACKER_STORE_URL": f"sqlite:///{db_path}"},
            extra_args=["--enable-api", "--auth-token", API_TOKEN],
        ),
    ]
    try:
        for service in services:
            service.start()
        stack.wait_healthy(services, settings.STARTUP_TIMEOUT_S)
        yield Stack(*services, rasa_url=f"http://127.0.0.1:{rasa_port}", db_path=db_path, bank_url=bank_url)
    finally:
        stack.stop_all(services)


def metadata(event: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return (event or {}).get("metadata") or {}
