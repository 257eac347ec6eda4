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
import time
import uuid

import aio_pika
import pytest
from rasa.core.brokers.broker import EventBroker
from rasa.core.utils import read_endpoints_from_path
from rasa.shared.core.events import UserUttered
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from addons.event_broker import amqp_url, pika_settings
from addons.outbox import OutboxEventBroker
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
    assert amqp_url("amqp://rabbitmq/%2F") == "amqp://guest:guest@rabbitmq:5672/%2F"


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
        assert isinstance(broker, OutboxEventBroker)
        assert broker.is_ready()
        assert (broker.exchange_name, broker.queues) == (exchange, [queue])
        consumer = await aio_pika.connect(RABBITMQ_URL)
        try:
            broker.publish(event)
            channel = await consumer.channel()
            source = await channel.declare_queue(queue, durable=True)  # as the broker declares it
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


# --- the outbox (addons/outbox.py) --------------------------------------------------------------

def _turn(text: str):
    from rasa.shared.core.events import ActionExecuted, BotUttered

    return [UserUttered(text, intent={"name": "greet", "confidence": 0.9}, timestamp=time.time()),
            ActionExecuted("utter_greet", timestamp=time.time()),
            BotUttered(f"re: {text}", timestamp=time.time()), ActionExecuted("action_listen", timestamp=time.time())]


def _outbox_bodies(url: str, sender: str) -> list:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [json.loads(b) for (b,) in connection.execute(
                sa.text("SELECT body FROM event_outbox WHERE sender_id = :s ORDER BY id"), {"s": sender})]
    finally:
        engine.dispose()


def _store(broker):
    from rasa.shared.core.domain import Domain

    from addons.tracker_store import AsyncSQLTrackerStore

    return AsyncSQLTrackerStore(domain=Domain.empty(), event_broker=broker)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_outbox_rows_are_written_with_the_events_in_one_transaction(store_url, monkeypatch):
    from rasa.shared.core.trackers import DialogueStateTracker

    from addons import outbox
    from addons.tracker_store import TrackerStoreError

    monkeypatch.setenv("TRACKER_STORE_URL", store_url)
    sender = f"outbox-{uuid.uuid4().hex}"
    # RabbitMQ out of reach: the publisher keeps failing, the rows stay
    broker = OutboxEventBroker(f"amqp://guest:guest@127.0.0.1:{_closed_port()}/%2F", ["q"], "x")

    async def scenario():
        store = _store(broker)
        tracker = DialogueStateTracker.from_events(sender, _turn("hi"))
        await store.save(tracker)
        await store.save(tracker)  # saving again adds nothing, to either table
        # the outbox insert fails: the events of that save are not stored either
        for event in _turn("thanks"):
            tracker.update(event)
        real_rows = outbox.rows
        monkeypatch.setattr(outbox, "rows", lambda *a: [{**r, "body": None} for r in real_rows(*a)])
        with pytest.raises(TrackerStoreError):
            await store.save(tracker)
        monkeypatch.setattr(outbox, "rows", real_rows)
        stored = await store.retrieve(sender)
        await asyncio.sleep(0.5)
        await broker.close()
        await store.close()
        return [e.as_dict() for e in stored.events]

    stored = asyncio.run(scenario())
    try:
        assert [e["event"] for e in stored] == ["user", "action", "bot", "action"]
        assert _outbox_bodies(store_url, sender) == [{"sender_id": sender, **e} for e in stored]
    finally:
        _delete_outbox(store_url, sender)


def _delete_outbox(url: str, sender: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM event_outbox WHERE sender_id = :s"), {"s": sender})
    engine.dispose()


class _FakeExchange:
    """Confirms each message, except that it fails once at message number `fail_at`."""

    def __init__(self, fail_at=None):
        self.fail_at, self.messages = fail_at, []

    async def publish(self, message, routing_key, timeout=None):
        from pamqp.commands import Basic

        if self.fail_at is not None and len(self.messages) + 1 == self.fail_at:
            self.fail_at = None
            raise ConnectionResetError(104, "Connection reset by peer")
        self.messages.append(message)
        return Basic.Ack()


def test_the_publisher_deletes_a_row_only_after_its_confirm(tmp_path, monkeypatch):
    from rasa.shared.core.trackers import DialogueStateTracker

    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    monkeypatch.setenv("TRACKER_STORE_URL", url)
    sender = f"confirm-{uuid.uuid4().hex}"
    broker = OutboxEventBroker("amqp://guest:guest@127.0.0.1:1/%2F", ["q"], "x")
    exchange = _FakeExchange(fail_at=3)

    async def ready():
        return exchange

    async def scenario():
        store = _store(broker)
        broker._closed = True  # no background task: the test drives the publisher
        await store.save(DialogueStateTracker.from_events(sender, _turn("one") + _turn("two")))
        broker._ready_exchange = ready
        with pytest.raises(ConnectionResetError):
            await broker.publish_pending()
        left = len(_outbox_bodies(url, sender))
        assert await broker.publish_pending() == 6
        assert await broker.publish_pending() == 0
        await store.close()
        return left

    left = asyncio.run(scenario())
    assert left == 6  # the two confirmed rows were deleted, the failed one and the rest kept
    bodies = [json.loads(m.body) for m in exchange.messages]
    assert [b["event"] for b in bodies] == ["user", "action", "bot", "action"] * 2
    assert [b.get("text") for b in bodies if b["event"] == "user"] == ["one", "two"]
    ids = [int(m.message_id) for m in exchange.messages]
    assert ids == sorted(ids) and len(set(ids)) == 8  # the outbox row id, in order
    assert _outbox_bodies(url, sender) == []


def test_outbox_events_reach_rabbitmq_in_order_once_it_is_back(store_url, monkeypatch):
    """Saved while RabbitMQ is unreachable, the events wait in the outbox; once it is
    reachable they are published in order, each once, and the rows are gone."""
    from rasa.shared.core.trackers import DialogueStateTracker

    if not asyncio.run(_rabbitmq_reachable()):
        pytest.skip(f"RabbitMQ is not reachable at {RABBITMQ_URL}")
    monkeypatch.setenv("TRACKER_STORE_URL", store_url)
    suffix = uuid.uuid4().hex[:12]
    queue, exchange = f"test_outbox_{suffix}", f"test-outbox-{suffix}"
    sender = f"outbox-{suffix}"
    broker = OutboxEventBroker(f"amqp://guest:guest@127.0.0.1:{_closed_port()}/%2F", [queue], exchange)

    async def scenario():
        store = _store(broker)
        tracker = DialogueStateTracker.from_events(sender, _turn("one"))
        await store.save(tracker)
        for event in _turn("two"):
            tracker.update(event)
        await store.save(tracker)
        await asyncio.sleep(1.0)  # the publisher tries and fails meanwhile
        waiting = len(_outbox_bodies(store_url, sender))
        broker.url = RABBITMQ_URL  # RabbitMQ is back
        consumer = await aio_pika.connect(RABBITMQ_URL)
        messages = []
        try:
            channel = await consumer.channel()
            source = await channel.declare_queue(queue, durable=True)
            deadline = time.monotonic() + 15
            while len(messages) < 8 and time.monotonic() < deadline:
                message = await source.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.1)
                    continue
                if json.loads(message.body).get("sender_id") == sender:  # the test database is shared
                    messages.append(message)
            await asyncio.sleep(1.0)
            extra = None
            while extra is None:
                message = await source.get(no_ack=True, fail=False)
                if message is None:
                    break
                if json.loads(message.body).get("sender_id") == sender:
                    extra = message
        finally:
            await broker.close()
            await store.close()
            cleanup = await consumer.channel()
            await cleanup.queue_delete(queue)
            await cleanup.exchange_delete(exchange)
            await consumer.close()
        return waiting, tracker, messages, extra

    try:
        waiting, tracker, messages, extra = asyncio.run(scenario())
        assert waiting == 8
        assert extra is None
        assert [json.loads(m.body) for m in messages] == [{"sender_id": sender, **e.as_dict()} for e in tracker.events]
        ids = [int(m.message_id) for m in messages]
        assert ids == sorted(ids) and len(set(ids)) == 8
        assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in messages)
        assert _outbox_bodies(store_url, sender) == []
    finally:
        _delete_outbox(store_url, sender)
