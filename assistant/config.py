"""Every environment variable of the Rasa side, the action server's start, the bank and
the operator tooling, read here and nowhere else (the README's configuration table lists
them; the answer pipeline's are in assistant/settings.py, the generator's in
generator/settings.py, the agent console's in console/settings.py).

Each process builds frozen settings objects from the environment with the functions
below, one per part (`bank()`, `channels()`, `rate_limits()`, `tracker_store()`,
`lock_store()`, `event_broker()`, `ops()`, ...). Each takes an optional mapping instead of
the process's environment (tests). A value that cannot be used raises SettingsError,
whose one line names the variable, the value and what it must be; the processes stop
with it.

The customer-identity trust rule lives here too: only the channel's verified key of the
latest user message names the customer (VERIFIED_CUSTOMER_KEY, `verified_customer_id`;
docs/security.md), and a process configured to trust an identity nobody authenticated
refuses to start (`identity_settings_error`).
"""
from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

ROOT = Path(__file__).resolve().parent.parent

Environ = Optional[Mapping[str, str]]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class SettingsError(ValueError):
    """A variable's value cannot be used; the message (one line) names it."""


# -- reading one variable ---------------------------------------------------------------------


def _env(environ: Environ) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _text(env: Mapping[str, str], name: str, default: str = "") -> str:
    """The value without surrounding blanks; the default when unset or blank."""
    return env.get(name, "").strip() or default


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum or math.isinf(value):
        raise SettingsError(f"{name}={raw!r} must be a number, {minimum:g} or more")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be {minimum} or more")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _integer(env, name, default)
    if value > 65535:
        raise SettingsError(f"{name}={value} is not a port (0 to 65535)")
    return value


def networks(raw: str) -> Tuple[Network, ...]:
    """'127.0.0.0/8, ::1 10.1.2.3' -> networks (an address is a network of one)."""
    return tuple(ipaddress.ip_network(part, strict=False) for part in raw.replace(",", " ").split())


def _networks(env: Mapping[str, str], name: str, default: str) -> Tuple[Network, ...]:
    raw = env.get(name, default)
    try:
        return networks(raw)
    except ValueError as error:
        raise SettingsError(f"{name}={raw!r}: {error}") from None


# -- who the customer is ------------------------------------------------------------------------

# The message metadata key of the customer the channel verified (addons/channels.py sets
# it, for an authenticated caller only, and removes any value a client sends under it):
# the only identity the actions trust.
VERIFIED_CUSTOMER_KEY = "verified_customer_id"
# Settings of the old trust rule (channel names trusted with a client's customer_id): a
# service configured with one refuses to start rather than run with another meaning.
OBSOLETE_IDENTITY_SETTINGS = {
    "BANK_CUSTOMER_ID_CHANNELS": "no channel name is trusted with a customer id any more; only an "
                                 "authenticated caller is (REST_CHANNEL_TOKEN, SOCKETIO_JWT_KEY): unset it",
}


def verified_customer_id(events: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """The customer the channel verified for the latest user message of these tracker
    events (dicts, as Rasa sends them to the action server), or None.

    Only `metadata[VERIFIED_CUSTOMER_KEY]` counts: the channels remove any value a client
    sends under that key and set it only for an authenticated caller. A client's own
    `metadata.customer_id` means nothing here, and an earlier message's identity does not
    carry over to a later one (each message of an authenticated caller carries it again).
    """
    for event in reversed(list(events)):
        if event.get("event") == "user":
            value = (event.get("metadata") or {}).get(VERIFIED_CUSTOMER_KEY)
            return value.strip() if isinstance(value, str) and value.strip() else None
    return None


def identity_settings_error(environ: Environ = None) -> Optional[str]:
    """Why this environment would trust an identity nobody authenticated, or None: the
    old BANK_CUSTOMER_ID_CHANNELS, or a socket.io JWT key with the method `none`. Rasa
    (the channels) and the action server refuse to start with it, in one line."""
    env = _env(environ)
    for name, why in OBSOLETE_IDENTITY_SETTINGS.items():
        if env.get(name, "").strip():
            return f"refusing to start: {name} is set, but {why} (README.md, Configuration)"
    method = env.get("SOCKETIO_JWT_METHOD", "HS256")
    if env.get("SOCKETIO_JWT_KEY") and method.strip().lower() in ("", "none"):
        return f"refusing to start: SOCKETIO_JWT_METHOD={method!r} would accept unsigned tokens"
    return None


# -- the bank database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BankSettings:
    # SQLAlchemy URL of the bank's data; a SQLite file under build/ by default.
    db_url: str = f"sqlite:///{ROOT / 'build' / 'bank.db'}"
    # The demo customer: the one the demo page's token names (ops/web.py), and
    # `python -m assistant.bank show`'s default. Never a default identity for a conversation.
    demo_customer_id: str = "C1001"


def bank(environ: Environ = None) -> BankSettings:
    env = _env(environ)
    return BankSettings(
        db_url=env.get("BANK_DB_URL") or BankSettings.db_url,
        demo_customer_id=env.get("BANK_DEMO_CUSTOMER_ID", BankSettings.demo_customer_id).strip(),
    )


# -- Rasa: the channels and their rate limits -----------------------------------------------------


@dataclass(frozen=True)
class ChannelSettings:
    max_message_chars: int = 4000  # longer messages get HTTP 413
    rest_token: str = ""  # REST_CHANNEL_TOKEN: the bank's back end; only it may name the customer
    jwt_key: str = ""  # SOCKETIO_JWT_KEY: socket.io needs a JWT signed with it
    jwt_method: str = "HS256"
    cors_origins: Tuple[str, ...] = ()  # web origins allowed from a browser; "*" = any
    socketio_redis_url: str = ""  # emits through Redis to every replica (SOCKETIO_REDIS_URL)
    socketio_redis_channel: str = "lakeside-socketio"


def channels(environ: Environ = None) -> ChannelSettings:
    env = _env(environ)
    web_port = _text(env, "WEB_PORT", "8080")
    origins = env.get("CORS_ORIGINS", f"http://localhost:{web_port} http://127.0.0.1:{web_port}")
    return ChannelSettings(
        max_message_chars=_integer(env, "MAX_MESSAGE_CHARS", ChannelSettings.max_message_chars, minimum=1),
        rest_token=env.get("REST_CHANNEL_TOKEN", ""),
        jwt_key=env.get("SOCKETIO_JWT_KEY", ""),
        jwt_method=env.get("SOCKETIO_JWT_METHOD", ChannelSettings.jwt_method),
        cors_origins=tuple(o.rstrip("/") for o in origins.replace(",", " ").split() if o),
        socketio_redis_url=_text(env, "SOCKETIO_REDIS_URL"),
        socketio_redis_channel=env.get("SOCKETIO_REDIS_CHANNEL", ChannelSettings.socketio_redis_channel),
    )


LOOPBACK = "127.0.0.0/8 ::1"


@dataclass(frozen=True)
class RateLimits:
    """addons/rate_limit.py's token buckets; ops/nginx puts the per-client one in nginx."""

    sender_per_min: float = 60  # messages a minute one conversation may send (0: no limit)
    sender_burst: int = 20  # how many of them may come at once
    # requests a minute from one client address (0: no limit): 2 a second, room for an
    # office of people behind one address; a flood of more costly turns slows everyone
    # (bench/results/flood.md: 600/min let one client push customers' p95 up 4-6x)
    client_per_min: float = 120
    client_burst: int = 20
    exempt: Tuple[Network, ...] = networks(LOOPBACK)  # not limited
    # a refusal is sent after min(this, the wait) seconds: a client that ignores
    # Retry-After then sends at most one request per connection a second, instead of
    # making the server answer thousands of refusals (0: at once)
    refusal_delay_s: float = 1.0
    trusted_proxies: Tuple[Network, ...] = networks(LOOPBACK)  # whose X-Forwarded-For names the client

    @classmethod
    def from_env(cls, environ: Environ = None) -> "RateLimits":
        return rate_limits(environ)


def rate_limits(environ: Environ = None) -> RateLimits:
    env = _env(environ)

    def burst(name: str, default: int) -> int:
        return max(1, int(_number(env, name, default)))

    return RateLimits(
        sender_per_min=_number(env, "RATE_LIMIT_SENDER_PER_MIN", RateLimits.sender_per_min),
        sender_burst=burst("RATE_LIMIT_SENDER_BURST", RateLimits.sender_burst),
        client_per_min=_number(env, "RATE_LIMIT_CLIENT_PER_MIN", RateLimits.client_per_min),
        client_burst=burst("RATE_LIMIT_CLIENT_BURST", RateLimits.client_burst),
        exempt=_networks(env, "RATE_LIMIT_EXEMPT", LOOPBACK),
        refusal_delay_s=_number(env, "RATE_LIMIT_REFUSAL_DELAY_S", RateLimits.refusal_delay_s),
        trusted_proxies=_networks(env, "RATE_LIMIT_TRUSTED_PROXIES", LOOPBACK),
    )


# -- Rasa: tracker store, lock store, event broker, NLU ------------------------------------------

DEFAULT_TRACKER_STORE_URL = "sqlite:///rasa.db"


@dataclass(frozen=True)
class TrackerStoreSettings:
    url: str = ""  # TRACKER_STORE_URL; empty: the endpoint's own URL, else DEFAULT_TRACKER_STORE_URL
    retry_s: float = 20.0  # how long a read or save retries an unreachable database
    connect_timeout_s: float = 5.0  # a new PostgreSQL connection (asyncpg's default is 60)
    # Rasa's own PostgreSQL knobs (rasa.core.tracker_store: SQL_POOL_SIZE, SQL_MAX_OVERFLOW,
    # POSTGRESQL_SCHEMA), read the same way for the async store.
    pool_size: int = 50
    max_overflow: int = 100
    schema: str = ""

    def resolved_url(self, configured: Optional[str] = None) -> str:
        """TRACKER_STORE_URL, else the endpoint's own URL, else the SQLite file Rasa uses by default."""
        return self.url or configured or DEFAULT_TRACKER_STORE_URL


def tracker_store(environ: Environ = None) -> TrackerStoreSettings:
    env = _env(environ)
    return TrackerStoreSettings(
        url=_text(env, "TRACKER_STORE_URL"),
        retry_s=_number(env, "TRACKER_STORE_RETRY_S", TrackerStoreSettings.retry_s),
        connect_timeout_s=_number(env, "TRACKER_STORE_CONNECT_TIMEOUT_S", TrackerStoreSettings.connect_timeout_s),
        pool_size=_integer(env, "SQL_POOL_SIZE", TrackerStoreSettings.pool_size, minimum=1),
        max_overflow=_integer(env, "SQL_MAX_OVERFLOW", TrackerStoreSettings.max_overflow),
        schema=_text(env, "POSTGRESQL_SCHEMA"),
    )


@dataclass(frozen=True)
class LockStoreSettings:
    url: str = ""  # LOCK_STORE_URL: redis://host:6379/1; empty: in memory (one process)
    key_prefix: str = ""
    sanic_workers: int = 1  # Rasa's worker processes (Rasa reads SANIC_WORKERS itself too)


def lock_store(environ: Environ = None) -> LockStoreSettings:
    env = _env(environ)
    return LockStoreSettings(
        url=_text(env, "LOCK_STORE_URL"),
        key_prefix=_text(env, "LOCK_STORE_KEY_PREFIX"),
        sanic_workers=_integer(env, "SANIC_WORKERS", LockStoreSettings.sanic_workers, minimum=1),
    )


@dataclass(frozen=True)
class EventBrokerSettings:
    url: str = ""  # EVENT_BROKER_URL: amqp://user:pass@host:5672/%2F; empty: none
    queue: str = "rasa_events"


def event_broker(environ: Environ = None) -> EventBrokerSettings:
    env = _env(environ)
    return EventBrokerSettings(url=_text(env, "EVENT_BROKER_URL"),
                               queue=_text(env, "EVENT_BROKER_QUEUE", EventBrokerSettings.queue))


def embeddings_model_dir(environ: Environ = None) -> Optional[Path]:
    """EMBEDDINGS_MODEL_DIR: the NLU's ONNX sentence encoder, instead of config.yml's."""
    raw = _text(_env(environ), "EMBEDDINGS_MODEL_DIR")
    return Path(raw) if raw else None


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads_set(environ: Environ = None) -> bool:
    """Whether the environment names a BLAS thread count (else Rasa runs one: addons/fixes.py)."""
    env = _env(environ)
    return any(env.get(name) for name in BLAS_THREAD_VARIABLES)


# -- logs (Rasa, the action server) --------------------------------------------------------------

LOG_FORMATS = ("text", "json")


def log_format(environ: Environ = None) -> str:
    """LOG_FORMAT, `text` or `json`; SettingsError (a ValueError) for anything else."""
    value = _env(environ).get("LOG_FORMAT", "").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise SettingsError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return value


# -- the action server's address -----------------------------------------------------------------


@dataclass(frozen=True)
class ActionServerSettings:
    host: str = "127.0.0.1"
    port: int = 5055


def action_server(environ: Environ = None) -> ActionServerSettings:
    env = _env(environ)
    return ActionServerSettings(host=_text(env, "ACTIONS_HOST", ActionServerSettings.host),
                                port=_port(env, "ACTIONS_PORT", ActionServerSettings.port))


# -- the operator tooling and the run command (ops/) -----------------------------------------------


@dataclass(frozen=True)
class OpsSettings:
    shared_data_dir: Path = ROOT.parent / "shared" / "data"  # the data sets
    # Interface of what customers reach: Rasa (or the load balancer in front of its
    # replicas) and the demo page.
    bind_host: str = "127.0.0.1"
    # The action server and the generator have no business being public (the action
    # server has no authentication): loopback unless set on purpose, whatever BIND_HOST says.
    actions_host: str = "127.0.0.1"
    generator_host: str = "127.0.0.1"
    rasa_port: int = 5005
    actions_port: int = 5055
    generator_port: int = 8000
    web_port: int = 8080
    console_port: int = 8090
    exporter_port: int = 9105
    # Seconds to wait for each service to become healthy (the first generator start
    # converts the model, about a minute).
    startup_timeout_s: float = 300.0
    # `rasa shell` waits this long for a reply; LLM replies on CPU take several seconds.
    shell_request_timeout_s: int = 90
    model_registry_dir: Path = ROOT / "models" / "registry"
    promoted_by: str = ""  # who promotes a model (default: the user)
    operator: str = ""  # USER: who releases a handoff (default: the user)
    rasa_api_token: str = ""  # RASA_API_TOKEN; empty: the run command's build/rasa-api-token
    socketio_jwt_key: str = ""  # the demo page signs its visitors' tokens with it
    socketio_jwt_method: str = "HS256"
    public_rasa_url: str = ""  # Rasa's URL as the browser reaches it (empty: the page's host)
    generator_url: str = ""  # GENERATOR_URL as set; empty: the local generator
    embeddings_url: str = ""  # EMBEDDINGS_URL as set; empty: GENERATOR_URL's server
    nginx: str = ""  # NGINX: the nginx binary (empty: the one on PATH)
    # The scale-out configuration's stores, as set (None: unset, so the defaults of this
    # machine apply; an empty EVENT_BROKER_URL means no event broker).
    tracker_store_url: Optional[str] = None
    lock_store_url: Optional[str] = None
    event_broker_url: Optional[str] = None


def ops(environ: Environ = None) -> OpsSettings:
    env = _env(environ)
    d = OpsSettings
    return OpsSettings(
        shared_data_dir=Path(_text(env, "SHARED_DATA_DIR") or d.shared_data_dir),
        bind_host=_text(env, "BIND_HOST", d.bind_host),
        actions_host=_text(env, "ACTIONS_HOST", d.actions_host),
        generator_host=_text(env, "GENERATOR_HOST", d.generator_host),
        rasa_port=_port(env, "RASA_PORT", d.rasa_port),
        actions_port=_port(env, "ACTIONS_PORT", d.actions_port),
        generator_port=_port(env, "GENERATOR_PORT", d.generator_port),
        web_port=_port(env, "WEB_PORT", d.web_port),
        console_port=_port(env, "CONSOLE_PORT", d.console_port),
        exporter_port=_port(env, "EXPORTER_PORT", d.exporter_port),
        startup_timeout_s=_number(env, "STARTUP_TIMEOUT_S", d.startup_timeout_s),
        shell_request_timeout_s=_integer(env, "SHELL_REQUEST_TIMEOUT_S", d.shell_request_timeout_s, minimum=1),
        model_registry_dir=Path(_text(env, "MODEL_REGISTRY_DIR") or d.model_registry_dir),
        promoted_by=_text(env, "PROMOTED_BY"),
        operator=_text(env, "USER"),
        rasa_api_token=env.get("RASA_API_TOKEN", ""),
        socketio_jwt_key=env.get("SOCKETIO_JWT_KEY", ""),
        socketio_jwt_method=env.get("SOCKETIO_JWT_METHOD", d.socketio_jwt_method),
        public_rasa_url=_text(env, "PUBLIC_RASA_URL"),
        generator_url=_text(env, "GENERATOR_URL"),
        embeddings_url=_text(env, "EMBEDDINGS_URL"),
        nginx=_text(env, "NGINX"),
        tracker_store_url=env.get("TRACKER_STORE_URL"),
        lock_store_url=env.get("LOCK_STORE_URL"),
        event_broker_url=env.get("EVENT_BROKER_URL"),
    )
