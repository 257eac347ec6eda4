"""Rasa's event broker, chosen by one environment variable.

With `EVENT_BROKER_URL` unset (the default) Rasa publishes no events. With
`EVENT_BROKER_URL=amqp://user:password@rabbitmq:5672/%2F` this returns an
OutboxEventBroker (addons/outbox.py): every event the tracker store saves is written to
its outbox in the same transaction and then published, as Rasa's JSON
(`{"sender_id": ..., "event": ..., ...}`, what Rasa's PikaEventBroker sends), to
RabbitMQ, for analytics or other consumers, with publisher confirms and the outbox
row's id as `message_id`. The URL gives host, port (default 5672, amqps 5671), user,
password (default guest/guest) and virtual host (the path; `%2F` is the default vhost
`/`); `EVENT_BROKER_QUEUE` names the queue (default `rasa_events`), bound to the fanout
exchange `exchange_name` (endpoints.yml `event_broker:`, default Rasa's `rasa-exchange`).

Rasa loads a custom broker by awaiting `from_endpoint_config` on the class named by
`type:` and uses what it returns, so returning None means "no broker", exactly as an
endpoints.yml without an `event_broker:` section.
"""
from __future__ import annotations

from asyncio import AbstractEventLoop
from typing import Any, Dict, Optional
from urllib.parse import urlparse

from rasa.core.brokers.broker import EventBroker
from rasa.core.brokers.pika import RABBITMQ_EXCHANGE
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from addons import prepare_rasa
from addons.outbox import OutboxEventBroker
from assistant import config

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)

DEFAULT_QUEUE = config.EventBrokerSettings.queue
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


def _redacted(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return url.replace(f":{parsed.password}@", ":***@", 1)


def pika_settings(url: str) -> Dict[str, Any]:
    """PikaEventBroker's arguments (host, port, username, password, queues) for an AMQP URL.

    `host` is the URL without its credentials: PikaEventBroker adds `username:password@`
    itself and logs the host, so the password never reaches a log line. Percent-encoded
    user names and passwords stay encoded, as the AMQP URL needs them.
    """
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        raise RasaException(
            f"EVENT_BROKER_URL must be an amqp:// or amqps:// URL of RabbitMQ, "
            f"e.g. amqp://user:password@rabbitmq:5672/%2F, not '{_redacted(url)}'"
        )
    try:
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    except ValueError as error:  # a port that is not a number
        raise RasaException(f"EVENT_BROKER_URL has a bad port: '{_redacted(url)}'") from error
    hostname = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    host = f"{parsed.scheme}://{hostname}:{port}{parsed.path}"
    if parsed.query:
        host = f"{host}?{parsed.query}"
    return {
        "host": host,
        "port": port,
        "username": parsed.username or "guest",
        "password": parsed.password or "guest",
        "queues": [config.event_broker().queue],
    }


class EnvEventBroker(EventBroker):
    """A factory in the shape Rasa loads custom event brokers with (a class)."""

    @classmethod
    async def from_endpoint_config(
        cls,
        broker_config: Optional[EndpointConfig],
        event_loop: Optional[AbstractEventLoop] = None,
    ) -> Optional[EventBroker]:
        url = config.event_broker().url
        if not url:
            return None
        settings = pika_settings(url)
        extra = dict(broker_config.kwargs) if broker_config else {}
        # Events go through the tracker store's outbox (addons/outbox.py) to the same
        # fanout exchange and queues as Rasa's PikaEventBroker; the publisher connects
        # in the background, so Rasa starts (and queues events) while RabbitMQ is away.
        return OutboxEventBroker(
            amqp_url(url), queues=settings["queues"],
            exchange_name=extra.get("exchange_name", RABBITMQ_EXCHANGE),
        )


def amqp_url(url: str) -> str:
    """The URL with RabbitMQ's defaults filled in (guest/guest, the port), for aio-pika."""
    settings = pika_settings(url)
    parsed = urlparse(settings["host"])
    netloc = f"{settings['username']}:{settings['password']}@{parsed.netloc}"
    return parsed._replace(netloc=netloc).geturl()
