"""The event broker follows EVENT_BROKER_URL: none by default, RabbitMQ when set.

The RabbitMQ test uses a real broker (TEST_RABBITMQ_URL, default the local one with
RabbitMQ's guest account) and skips, saying why, when there is none. It loads the broker
the way `rasa run` does (endpoints.yml -> EndpointConfig -> EventBroker.create), lets it
publish an event, and reads that message back from the queue with a separate client.
"""
from __future__ import annotations

import asyncio
import json
import os
import uuid

import aio_pika
import pytest
from rasa.core.brokers.broker import EventBroker
from rasa.core.brokers.pika import PikaEventBroker
from rasa.core.utils import read_endpoints_from_path
from rasa.shared.core.events import UserUttered
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from addons.event_broker import pika_settings
from ops import settings

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _endpoint(**kwargs) -> EndpointConfig:
    """The event_broker section of the project's endpoints.yml, plus test options."""
    configured = read_endpoints_from_path(settings.ROOT / "endpoints.yml").event_broker
    assert configured is not None and configured.type == "addons.event_broker.EnvEventBroker"
    return EndpointConfig(type=configured.type, **{**configured.kwargs, **kwargs})


async def _rabbitmq_reachable() -> bool:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(RABBITMQ_URL), timeout=3)
    except Exception:  # refused, timed out, bad credentials: all mean "not here"
        return False
    await connection.close()
    return True


def test_no_broker_by_default(monkeypatch):
    monkeypatch.delenv("EVENT_BROKER_URL", raising=False)
    assert asyncio.run(EventBroker.create(_endpoint())) is None


def test_a_non_amqp_url_is_refused_without_showing_the_password(monkeypatch):
    monkeypatch.setenv("EVENT_BROKER_URL", "redis://user:s3cret@127.0.0.1:6379/0")
    with pytest.raises(RasaException, match="amqp://") as error:
        asyncio.run(EventBroker.create(_endpoint()))
    assert "s3cret" not in str(error.value)


def test_url_parts_become_pika_settings(monkeypatch):
    monkeypatch.setenv("EVENT_BROKER_QUEUE", "bank_events")
    assert pika_settings("amqps://bot:p%40ss@mq.internal/lakeside?heartbeat=30") == {
        "host": "amqps://mq.internal:5671/lakeside?heartbeat=30",
        "port": 5671,
        "username": "bot",
        "password": "p%40ss",  # stays encoded: PikaEventBroker puts it back into a URL
        "queues": ["bank_events"],
    }
    monkeypatch.delenv("EVENT_BROKER_QUEUE")
    assert pika_settings("amqp://rabbitmq")["queues"] == ["rasa_events"]
    assert pika_settings("amqp://rabbitmq")["username"] == "guest"


def test_events_reach_the_rabbitmq_queue(monkeypatch):
    if not asyncio.run(_rabbitmq_reachable()):
        pytest.skip(f"RabbitMQ is not reachable at {RABBITMQ_URL}")
    # A queue and exchange of its own, so the test neither reads nor feeds real queues.
    suffix = uuid.uuid4().hex[:12]
    queue, exchange = f"test_events_{suffix}", f"test-exchange-{suffix}"
    monkeypatch.setenv("EVENT_BROKER_URL", RABBITMQ_URL)
    monkeypatch.setenv("EVENT_BROKER_QUEUE", queue)
    event = {"sender_id": f"test-{suffix}", **UserUttered("my card has not arrived", timestamp=1.5).as_dict()}

    async def scenario() -> bytes:
        broker = await EventBroker.create(_endpoint(exchange_name=exchange, connection_attempts=1))
        assert isinstance(broker, PikaEventBroker)
        assert broker.is_ready()
        assert "guest@" not in broker.host  # the credentials are not part of what Rasa logs
        consumer = await aio_pika.connect(RABBITMQ_URL)
        try:
            broker.publish(event)
            channel = await consumer.channel()
            source = await channel.get_queue(queue, ensure=True)
            for _ in range(100):  # up to 10 s for the broker's background publish
                message = await source.get(no_ack=True, fail=False)
                if message is not None:
                    return message.body
                await asyncio.sleep(0.1)
            raise AssertionError(f"no message arrived in queue {queue}")
        finally:
            await broker.close()
            cleanup = await consumer.channel()
            await cleanup.queue_delete(queue)
            await cleanup.exchange_delete(exchange)
            await consumer.close()

    body = asyncio.run(scenario())
    assert body == json.dumps(event).encode()
    assert json.loads(body)["text"] == "my card has not arrived"
