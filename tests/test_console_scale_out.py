"""An agent's reply reaches the customer whose socket another Rasa replica holds.

Behind nginx, socket.io sticks to one replica (ip_hash) while Rasa's API, which the
console calls, goes round-robin. With SOCKETIO_REDIS_URL the replicas emit through Redis
(python-socketio's AsyncRedisManager), so the replica that stores the reply reaches the
socket held by the other. Two real Rasa replicas sharing one tracker store and a Redis
lock store; the customer's socket on replica A, the console's call on replica B.
"""
from __future__ import annotations

import asyncio
import json
import queue
import time
import urllib.request
import uuid

import pytest

from ops import settings, stack
from ops.stack import free_port
from tests.conftest import API_TOKEN

REDIS_URL = "redis://127.0.0.1:6379/3"
ORIGIN = "http://127.0.0.1:9"


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, trained_model):
    if not _redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    work = tmp_path_factory.mktemp("console-replicas")
    ports = [free_port(), free_port()]
    env = {
        "TRACKER_STORE_URL": f"sqlite:///{work / 'tracker.db'}",
        "LOCK_STORE_URL": REDIS_URL, "LOCK_STORE_KEY_PREFIX": f"console-test-{uuid.uuid4().hex[:8]}",
        "SOCKETIO_REDIS_URL": REDIS_URL, "SOCKETIO_REDIS_CHANNEL": f"console-test-{uuid.uuid4().hex[:8]}",
        "CORS_ORIGINS": ORIGIN, "SOCKETIO_JWT_KEY": "", "REST_CHANNEL_TOKEN": "",
    }
    patch = pytest.MonkeyPatch()
    patch.setenv("CORS_ORIGINS", ORIGIN)  # rasa_service() passes it to --cors
    services = [stack.rasa_service(port, work, trained_model, stack.endpoints_for(free_port(), work), env=env,
                                   extra_args=["--enable-api", "--auth-token", API_TOKEN], name=f"rasa-{i}")
                for i, port in enumerate(ports)]
    try:
        for service in services:
            service.start()
        stack.wait_healthy(services, settings.STARTUP_TIMEOUT_S)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        stack.stop_all(services)
        patch.undo()


def test_an_agent_reply_sent_through_one_replica_reaches_a_socket_on_the_other(replicas):
    import socketio

    from console.rasa_api import RasaAPI

    replica_a, replica_b = replicas
    sender = f"scale-{uuid.uuid4().hex}"
    got: "queue.Queue" = queue.Queue()
    confirmed: "queue.Queue" = queue.Queue()
    client = socketio.Client(reconnection=False, websocket_extra_options={"origin": ORIGIN})
    client.on("bot_uttered", got.put)
    client.on("session_confirm", confirmed.put)
    client.connect(replica_a, transports=["websocket"], wait_timeout=10)
    try:
        client.emit("session_request", {"session_id": sender})
        assert confirmed.get(timeout=10) == sender
        # The customer last wrote over socket.io (stored as such, nothing predicted).
        user = [{"event": "user", "text": "can I talk to a person", "input_channel": "socketio",
                 "timestamp": time.time(), "parse_data": {"intent": {"name": "request_human", "confidence": 1.0}}}]
        request = urllib.request.Request(
            f"{replica_b}/conversations/{sender}/tracker/events?token={API_TOKEN}", data=json.dumps(user).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

        async def reply(text: str) -> None:
            api = RasaAPI(replica_b, API_TOKEN, 30)
            try:
                await api.send_agent_message(sender, text, "alice", "Alice Smith")
            finally:
                await api.close()

        for n in range(3):
            text = f"Hello from the agent, message {n}"
            asyncio.run(reply(text))
            assert got.get(timeout=10)["text"] == text
        # stored once, as the agent's
        async def stored() -> list:
            api = RasaAPI(replica_a, API_TOKEN, 30)
            try:
                return await api.events(sender)
            finally:
                await api.close()

        events = asyncio.run(stored())
        agent = [e for e in events if e["event"] == "bot"]
        assert [e["metadata"]["source"] for e in agent] == ["agent"] * 3
    finally:
        client.disconnect()
