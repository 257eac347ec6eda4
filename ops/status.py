"""Every part of the running assistant at a glance: up or down, and what it runs."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional, Tuple

from assistant import config
from ops import settings
from ops.train import latest_model

Row = Tuple[str, bool, str]


def _get(url: str, timeout: float = 3) -> Tuple[Optional[int], str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return None, str(getattr(error, "reason", error))


def _masked(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - show nothing rather than a secret
        return "(unparseable URL)"


def check_rasa(port: int) -> Row:
    """Version, the model actually served (through the API, when the token is known)
    and the registry's current version."""
    from ops.lifecycle import api_token
    from ops.registry import Registry

    code, body = _get(f"http://127.0.0.1:{port}/")
    if code != 200:
        return "rasa", False, f"not answering on :{port} ({body[:80]})"
    detail = body.strip()
    served_code, served = _get(f"http://127.0.0.1:{port}/status?token={api_token()}")
    if served_code == 200:
        detail += f"; serving {Path(json.loads(served).get('model_file', '?')).name}"
    elif (newest := latest_model()) is not None:
        detail += f"; newest model in models/: {newest.name}"
    current = Registry().current()
    if current is not None:
        detail += f"; registry current: v{current['version']}"
    return "rasa", True, detail


def check_actions(port: int) -> Row:
    code, body = _get(f"http://127.0.0.1:{port}/health")
    return "action server", code == 200, f":{port} " + ("ok" if code == 200 else f"down ({body[:80]})")


def check_generator(base_url: str) -> Row:
    code, body = _get(f"{base_url}/models")
    if code != 200:
        return "generator", False, f"{base_url} down ({body[:80]})"
    models = [m.get("id") for m in json.loads(body).get("data", [])]
    return "generator", True, f"{base_url}: {', '.join(models)}"


def check_embeddings(base_url: str, model: str) -> Row:
    """The embeddings endpoint (EMBEDDINGS_URL, else GENERATOR_URL's server) serves the
    model the knowledge index was built with (EMBEDDINGS_MODEL), as the action server's
    start check asks."""
    code, body = _get(f"{base_url}/models")
    if code != 200:
        return "embeddings", False, f"{base_url} down ({body[:80]})"
    try:
        served = [str(m.get("id")) for m in json.loads(body).get("data", [])]
    except (ValueError, AttributeError):
        return "embeddings", False, f"{base_url}/models: not a model list"
    if model not in served:
        return "embeddings", False, f"{base_url} does not serve {model} (serves: {', '.join(served) or 'nothing'})"
    return "embeddings", True, f"{base_url}: {model}"


def check_tracker_store(url: str) -> Row:
    import sqlalchemy as sa

    from assistant import conversations

    try:
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            if not conversations.has_events(connection):
                return "tracker store", True, f"{_masked(url)}: no conversations yet"
            senders = conversations.conversation_count(connection)
            waiting = _outbox_backlog(connection)
        return "tracker store", True, f"{_masked(url)}: {senders} conversations{waiting}"
    except sa.exc.SQLAlchemyError as error:
        return "tracker store", False, f"{_masked(url)}: {type(error).__name__}"


def _outbox_backlog(connection) -> str:
    """Events stored but not yet confirmed by RabbitMQ (addons/outbox.py), if any."""
    import time

    import sqlalchemy as sa

    if not sa.inspect(connection).has_table("event_outbox"):
        return ""
    count, oldest = connection.execute(sa.text("SELECT COUNT(*), MIN(created_at) FROM event_outbox")).one()
    if not count:
        return "; event outbox empty (all events published)"
    return f"; event outbox: {count} events waiting for RabbitMQ, oldest {time.time() - oldest:.0f} s"


def check_lock_store(url: str) -> Row:
    if not url:
        return "lock store", True, "in memory (one Rasa process)"
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
        return "lock store", True, f"redis {_masked(url)}"
    except redis.exceptions.RedisError as error:
        return "lock store", False, f"redis {_masked(url)}: {type(error).__name__}"


def collect(
    rasa_port: int = settings.RASA_PORT,
    actions_port: int = settings.ACTIONS_PORT,
    generator_url: str = "",
    tracker_url: str = "",
    lock_url: Optional[str] = None,
    embeddings_url: str = "",
) -> List[Row]:
    from assistant import settings as answer_settings
    from assistant.conversations import tracker_store_url

    generator_url = generator_url or config.ops().generator_url or (
        f"http://127.0.0.1:{settings.GENERATOR_PORT}/v1"
    )
    embeddings_url = embeddings_url or config.ops().embeddings_url or generator_url
    return [
        check_rasa(rasa_port),
        check_actions(actions_port),
        check_generator(generator_url.rstrip("/")),
        check_embeddings(embeddings_url.rstrip("/"), answer_settings.EMBEDDINGS_MODEL),
        check_tracker_store(tracker_url or tracker_store_url()),
        check_lock_store(config.lock_store().url if lock_url is None else lock_url),
    ]


def status(rows: Optional[List[Row]] = None) -> int:
    rows = rows if rows is not None else collect()
    width = max(len(name) for name, _, _ in rows)
    for name, up, detail in rows:
        print(f"{name:<{width}}  {'up  ' if up else 'DOWN'}  {detail}")
    return 0 if all(up for _, up, _ in rows) else 1
