"""Rasa's REST and socket.io channels, hardened for a public website.

Who the customer is, is decided here, where it is known whether the caller
authenticated: each channel removes any `verified_customer_id` a client puts in the
message metadata and sets it (VERIFIED_CUSTOMER_KEY) only for an authenticated caller.
The action server trusts that key alone (actions/tracker.py customer_id; the rule and
every setting of the channels: assistant/config.py); without it the customer is not
identified and the account actions ask them to sign in.
- REST: the back end's `metadata.customer_id`, only when REST_CHANNEL_TOKEN is set and
  the request carries it (`Authorization: Bearer …`); otherwise ignored.
- socket.io: the `customer_id` claim of the JWT the bank's web back end signed with
  SOCKETIO_JWT_KEY, checked on connect; the metadata a browser sends never names one.
No channel name is trusted on its own. Rasa refuses to start with a setting of the old
rule (BANK_CUSTOMER_ID_CHANNELS) or an unsigned JWT method (docs/security.md).

REST (`rest`, same URL /webhooks/rest/webhook): stock RestInput answers 500 to a JSON
body that is not an object and takes messages of any size; this one answers bad
requests with a 4xx and a JSON error, a turn that could not be stored, or whose
conversation could not be locked (Redis down), with a 503, and requires `Authorization: Bearer
$REST_CHANNEL_TOKEN` when that variable is set (server-to-server use).

Rasa's HTTP API (`--enable-api`): its routes that lock a conversation (POST
/conversations/<id>/messages, /trigger_intent, /execute, /tracker/events, PUT
/tracker/events, ...) turn any error into a 500; one whose conversation could not be
locked gets the REST channel's 503 instead (`lock_unavailable`, the same Retry-After and
JSON body), from an exception handler this module adds to the Rasa app (`_api_errors`).

socket.io (`socketio`, for the chat widget): Rasa's channel plus
- an optional JWT (`SOCKETIO_JWT_KEY`; Rasa's own `jwt_key` check on connect), whose
  `customer_id` claim identifies the customer for the connection's messages,
- connections only from the web origins in `CORS_ORIGINS` (browsers send Origin),
- `history_request` -> `history`: the conversation's messages from the tracker store,
  so a reloaded or reconnected widget shows what it missed,
- session persistence that works with python-socketio 5.10+ (Rasa 3.6 does not await
  `enter_room`, so replies to a persisted session reached nobody),
- custom responses sent as the message payload (`custom: {handoff: true}` arrives
  as `{"handoff": true}`; Rasa's output would pass its keys to `emit` instead),
- messages over MAX_MESSAGE_CHARS refused as on REST: not passed to Rasa, answered
  with a `bot_uttered` the widget shows, carrying `error: {status: 413}`.
- a message whose conversation could not be locked (Redis down or just restarted:
  addons/lock_store.py) answered as REST's 503: a `bot_uttered` with
  `error: {status: 503, retry_after}`; nothing of it was processed.
What it sends (history view, output channel, Redis across replicas): addons/socketio_output.py.

Both channels: rate limits per conversation and per client address (addons/rate_limit.py,
RATE_LIMIT_*): REST answers 429 with Retry-After, socket.io a `bot_uttered` with
`error: {status: 429, retry_after}`; nothing of a refused message reaches Rasa.
"""
from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from contextvars import ContextVar
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels import rest, socketio
from rasa.core.channels.channel import UserMessage, decode_bearer_token
from sanic import Blueprint, Sanic, response
from sanic.request import Request

from addons import prepare_rasa
from addons.lock_store import LockStoreUnavailable
from addons.rate_limit import RateLimiter, hold_refusal, retry_after
from addons.tracker_store import TrackerStoreError
from addons.socketio_output import SocketIOOutput, history, use_redis_manager
from assistant import config

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)

logger = logging.getLogger(__name__)

# Set when the turn of the current request could not be stored (see RestInput).
_turn_not_stored: ContextVar[bool] = ContextVar("turn_not_stored", default=False)
# Seconds to wait before sending again, when the conversation could not be locked (the
# lock store, Redis, is down or has just restarted: addons/lock_store.py); 0: it was.
_lock_unavailable: ContextVar[int] = ContextVar("lock_unavailable", default=0)
LOCK_UNAVAILABLE_TEXT = "I can't take your message right now. Please send it again in {seconds} s."


def lock_unavailable(seconds: int) -> response.HTTPResponse:
    """The 503 of a request whose conversation could not be locked (nothing of it was
    processed): REST's and the HTTP API's."""
    return response.json({"error": LOCK_UNAVAILABLE_TEXT.format(seconds=seconds), "retry_after": seconds},
                         status=503, headers={"Retry-After": str(seconds)})


def _lock_failure(error: Optional[BaseException]) -> Optional[LockStoreUnavailable]:
    """The LockStoreUnavailable this error is, or was raised while handling (Rasa's API
    routes catch every error and raise an ErrorResponse 500 in its place)."""
    for _ in range(5):
        if error is None or isinstance(error, LockStoreUnavailable):
            return error
        error = error.__cause__ or error.__context__
    return None


async def _api_errors(request: Request, error: Any) -> response.HTTPResponse:
    """The Rasa app's handler of its ErrorResponse (in place of Rasa's, which answers
    `error_info` with its status) and of LockStoreUnavailable: 503 for a conversation
    that could not be locked."""
    failure = _lock_failure(error)
    if failure is not None:
        logger.warning("%s %s refused: %s", request.method, request.path, failure)
        return lock_unavailable(failure.retry_after)
    return response.json(error.error_info, status=error.status)


# Longest user message accepted, in characters; longer ones get HTTP 413.
MAX_MESSAGE_CHARS = config.channels().max_message_chars

# The message metadata key of the customer this channel verified; the action server
# trusts nothing else (the identity rule: assistant/config.py).
VERIFIED_CUSTOMER_KEY = config.VERIFIED_CUSTOMER_KEY
# The JWT claim (socket.io) and REST metadata key that name the customer.
CUSTOMER_CLAIM = "customer_id"
MAX_CUSTOMER_ID_CHARS = 64


_rate_limiter: Optional[RateLimiter] = None


def rate_limiter() -> RateLimiter:
    """The process's limits, shared by both channels (one budget per client address)."""
    global _rate_limiter
    if _rate_limiter is None:
        _rate_limiter = RateLimiter()
    return _rate_limiter


RATE_LIMITED_TEXT = "You're sending messages faster than I can answer. Please wait {seconds} s and try again."


def too_many_requests(wait: float) -> response.HTTPResponse:
    seconds = retry_after(wait)
    return response.json({"error": RATE_LIMITED_TEXT.format(seconds=seconds), "retry_after": seconds},
                         status=429, headers={"Retry-After": str(seconds)})


def identity_settings_error() -> Optional[str]:
    """Why these settings would trust an unauthenticated identity, or None (the rule:
    assistant/config.py)."""
    return config.identity_settings_error()


def check_identity_settings() -> None:
    """Exit, with one line saying why, when the settings trust an unauthenticated identity
    (or a channel or rate limit setting is not understood)."""
    error = identity_settings_error()
    if error is None:
        try:
            config.channels()
            rate_limiter()
        except ValueError as bad:  # config.SettingsError
            error = f"refusing to start: {bad} (README.md, Configuration)"
    if error:
        logger.error(error)
        raise SystemExit(error)


def customer_id_value(value: Any) -> Optional[str]:
    """A customer id as the channel accepts it (a short non-empty string), or None."""
    if isinstance(value, str) and value.strip() and len(value.strip()) <= MAX_CUSTOMER_ID_CHARS:
        return value.strip()
    return None


def client_metadata(raw: Any) -> Dict[str, Any]:
    """The metadata a client sent, as a dict without the key only the channel may set."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if not isinstance(raw, dict):
        return {}
    return {key: value for key, value in raw.items() if key != VERIFIED_CUSTOMER_KEY}


def allowed_origins() -> List[str]:
    """Web origins allowed to use the channels from a browser (`CORS_ORIGINS`).

    Space- or comma-separated; `*` allows any. Default: the demo page of `make run`.
    """
    return list(config.channels().cors_origins)


def _error(status: int, message: str) -> response.HTTPResponse:
    return response.json({"error": message}, status=status)


def check_body(body: bytes, max_chars: int = MAX_MESSAGE_CHARS) -> Optional[response.HTTPResponse]:
    """The error response for a bad webhook body, or None when it is acceptable."""
    try:
        payload: Any = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _error(400, "The request body must be UTF-8 encoded JSON.")
    except ValueError:
        return _error(400, "The request body must be a JSON object.")
    if not isinstance(payload, dict):
        return _error(400, "The request body must be a JSON object.")
    sender, message = payload.get("sender"), payload.get("message")
    if sender is not None and not isinstance(sender, str):
        return _error(400, "'sender' must be a string.")
    if isinstance(sender, str) and not sender.strip():
        return _error(400, "'sender' must not be empty.")
    if not isinstance(message, str):
        return _error(400, "'message' must be a string.")
    if len(message) > max_chars:
        return _error(413, f"'message' is longer than {max_chars} characters.")
    if payload.get("metadata") is not None and not isinstance(payload["metadata"], dict):
        return _error(400, "'metadata' must be a JSON object.")
    return None


def socket_error(status: int, text: str, **details: Any) -> Dict[str, Any]:
    """A socket.io answer to a message the channel refused before Rasa saw it: a bot
    message the widget shows (`text`), with `error` for a client that reads it (the
    HTTP status REST would give, and e.g. retry_after)."""
    return {"text": text, "error": {"status": status, **details}}


def _token_ok(request: Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    given = given[7:] if given.lower().startswith("bearer ") else request.args.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


class RestInput(rest.RestInput):
    """The `rest` channel: malformed requests get a 4xx; optional bearer token; the
    customer named by an authenticated back end."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    def __init__(self) -> None:
        super().__init__()
        self.settings = config.channels()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "RestInput":
        check_identity_settings()
        return cls()

    def get_metadata(self, request: Request) -> Dict[Text, Any]:
        """The client's metadata; `metadata.customer_id` is verified only for a caller
        that sent REST_CHANNEL_TOKEN (without the token set, nobody is identified)."""
        metadata = client_metadata((request.json or {}).get("metadata"))
        token = self.settings.rest_token
        customer = customer_id_value(metadata.get(CUSTOMER_CLAIM))
        if token and customer and _token_ok(request, token):
            metadata[VERIFIED_CUSTOMER_KEY] = customer
        return metadata

    def blueprint(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Blueprint:
        async def guarded(message: UserMessage) -> Any:
            try:
                return await on_new_message(message)
            except TrackerStoreError:
                _turn_not_stored.set(True)
                raise
            except LockStoreUnavailable as error:  # nothing of the turn was processed: 503
                logger.warning("turn of %s refused: %s", message.sender_id, error)
                _lock_unavailable.set(error.retry_after)
                return None

        blueprint = super().blueprint(guarded)

        @blueprint.listener("before_server_start")
        async def api_errors(app: Sanic, _loop: Any) -> None:
            from rasa.server import ErrorResponse

            # Rasa registered its ErrorResponse handler when it made the app: this one
            # replaces it, for the app's every route (a blueprint's handlers are its own).
            app.exception(ErrorResponse, LockStoreUnavailable)(_api_errors)

        @blueprint.middleware("request")
        async def validate(request: Request) -> Optional[response.HTTPResponse]:
            # Sanic serves a keep-alive connection's requests in one task: reset per request.
            _turn_not_stored.set(False)
            _lock_unavailable.set(0)
            if request.method == "POST" and request.path.endswith("/webhook"):
                limiter = rate_limiter()
                client = limiter.client_address(request.ip, request.headers.get("X-Forwarded-For"))
                token = self.settings.rest_token
                back_end = bool(token) and _token_ok(request, token)
                # The bank's back end carries all its customers from one address: only the
                # per-conversation limit applies to it. Anyone else's requests all count,
                # refused ones too.
                wait = 0.0 if back_end else limiter.check_client(client)
                if wait:
                    await hold_refusal(wait, limiter.settings)
                    return too_many_requests(wait)
                if token and not back_end:
                    return _error(401, "A valid 'Authorization: Bearer <token>' header is required.")
                error = check_body(request.body or b"")
                if error:
                    return error
                wait = limiter.check_sender(str((request.json or {}).get("sender") or "default"), client)
                if wait:
                    await hold_refusal(wait, limiter.settings)
                    return too_many_requests(wait)
            return None

        @blueprint.middleware("response")
        async def turn_not_stored(request: Request, resp: Any) -> Optional[response.HTTPResponse]:
            # Rasa answers 200 with no (or unsaved) replies when the turn could not be
            # stored; the client must know to send the message again.
            if _lock_unavailable.get():
                return lock_unavailable(_lock_unavailable.get())
            if _turn_not_stored.get():
                return response.json(
                    {"error": "The conversation could not be saved; please send the message again."},
                    status=503, headers={"Retry-After": "5"},
                )
            return None

        return blueprint


class SocketIOInput(socketio.SocketIOInput):
    """Rasa's `socketio` channel with JWT and origins from the environment, and history."""

    @classmethod
    def name(cls) -> str:
        return "socketio"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "SocketIOInput":
        check_identity_settings()
        credentials = dict(credentials or {})
        settings = config.channels()
        if settings.jwt_key:
            credentials["jwt_key"] = settings.jwt_key
            credentials["jwt_method"] = settings.jwt_method
        return super().from_credentials(credentials)  # type: ignore[return-value]

    def get_output_channel(self) -> Optional[socketio.SocketIOOutput]:
        return SocketIOOutput(self.sio, self.bot_message_evt) if self.sio else super().get_output_channel()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def with_our_output(message: UserMessage) -> Any:
            message.output_channel = SocketIOOutput(self.sio, self.bot_message_evt)
            return await on_new_message(message)

        blueprint = super().blueprint(with_our_output)
        sio = self.sio
        assert sio is not None
        use_redis_manager(sio)
        rasa_connect = sio.handlers[self.namespace or "/"]["connect"]
        origins = allowed_origins()

        async def connect(sid: Text, environ: Dict, auth: Optional[Dict] = None) -> bool:
            origin = (environ.get("HTTP_ORIGIN") or "").rstrip("/")
            if origin and "*" not in origins and origin not in origins:
                logger.warning("socket.io connection from origin %s refused (CORS_ORIGINS)", origin)
                return False
            if not await rasa_connect(sid, environ, auth):
                return False
            # The customer of this connection: the signed token's claim, never metadata.
            claims = None
            if self.jwt_key and isinstance(auth, dict) and isinstance(auth.get("token"), str):
                claims = decode_bearer_token(auth["token"], self.jwt_key, self.jwt_algorithm)
            customer = customer_id_value((claims or {}).get(CUSTOMER_CLAIM))
            expires = (claims or {}).get("exp")
            # engine.io's environ says 127.0.0.1 for everyone: the address is Sanic's.
            request = environ.get("sanic.request")
            client = rate_limiter().client_address(
                getattr(request, "ip", "") or "", request.headers.get("X-Forwarded-For") if request else None)
            await sio.save_session(sid, {
                "customer_id": customer,
                "expires": float(expires) if isinstance(expires, (int, float)) else None,
                "client": client,
            }, namespace=self.namespace)
            return True

        sio.on("connect", connect, namespace=self.namespace)

        async def verified_customer(sid: Text) -> Optional[str]:
            """The customer the connection's token named, while the token is valid."""
            try:
                session = await sio.get_session(sid, namespace=self.namespace)
            except Exception:  # noqa: BLE001 - no session (disconnected): nobody
                return None
            expires = session.get("expires")
            if expires is not None and time.time() >= expires:
                return None  # the token ran out while connected: anonymous from now on
            return session.get("customer_id")

        async def limited(sid: Text, sender_id: Text) -> float:
            """Seconds this connection's client must wait before this message, or 0."""
            try:
                client = (await sio.get_session(sid, namespace=self.namespace)).get("client") or ""
            except Exception:  # noqa: BLE001 - no session (disconnected)
                client = ""
            limiter = rate_limiter()
            return limiter.check_client(client) or limiter.check_sender(sender_id, client)

        async def handle_message(sid: Text, data: Any) -> None:
            # Rasa's handler, with the metadata the client sent stripped of the verified
            # key and the connection's verified customer added.
            if not isinstance(data, dict):
                return
            if self.session_persistence:
                sender_id = data.get("session_id")
                if not isinstance(sender_id, str) or not sender_id:
                    logger.warning("socket.io message without a session_id ignored (send session_request first)")
                    return
            else:
                sender_id = sid
            text = data.get("message", "")
            wait = await limited(sid, sender_id)
            if wait:
                await hold_refusal(wait, rate_limiter().settings)
                seconds = retry_after(wait)
                await sio.emit(self.bot_message_evt, socket_error(
                    429, RATE_LIMITED_TEXT.format(seconds=seconds), retry_after=seconds),
                    room=sid, namespace=self.namespace)
                return
            if isinstance(text, str) and len(text) > MAX_MESSAGE_CHARS:
                # As REST's 413: not passed to Rasa (the widget's text box stops at this length).
                await sio.emit(self.bot_message_evt, socket_error(
                    413, f"Sorry, that message is too long for me. Please keep it under {MAX_MESSAGE_CHARS} "
                    "characters.", max_chars=MAX_MESSAGE_CHARS), room=sid, namespace=self.namespace)
                return
            metadata = client_metadata(data.get(self.metadata_key))
            metadata.pop(CUSTOMER_CLAIM, None)  # a browser does not get to say who it is
            customer = await verified_customer(sid)
            if customer:
                metadata[VERIFIED_CUSTOMER_KEY] = customer
            message = UserMessage(
                text if isinstance(text, str) else "", SocketIOOutput(sio, self.bot_message_evt), sender_id,
                input_channel=self.name(), metadata=metadata,
            )
            try:
                await with_our_output(message)
            except LockStoreUnavailable as error:  # as REST's 503: nothing of the message was processed
                logger.warning("turn of %s refused: %s", sender_id, error)
                await sio.emit(self.bot_message_evt, socket_error(
                    503, LOCK_UNAVAILABLE_TEXT.format(seconds=error.retry_after), retry_after=error.retry_after),
                    room=sid, namespace=self.namespace)

        sio.on(self.user_message_evt, handle_message, namespace=self.namespace)

        async def session_request(sid: Text, data: Optional[Dict]) -> None:
            # Rasa 3.6 calls AsyncServer.enter_room without awaiting it, which
            # python-socketio 5.10+ made a coroutine: the socket never joined its
            # session's room, so replies to a persisted session reached nobody.
            data = data if isinstance(data, dict) else {}
            session_id = data.get("session_id")
            if not isinstance(session_id, str) or not session_id:
                session_id = uuid.uuid4().hex
            if self.session_persistence:
                await sio.enter_room(sid, session_id, namespace=self.namespace)
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)

        sio.on("session_request", session_request, namespace=self.namespace)

        async def history_request(sid: Text, data: Optional[Dict]) -> None:
            session_id = (data or {}).get("session_id")
            if not isinstance(session_id, str) or not session_id:
                return
            if session_id not in sio.rooms(sid, namespace=self.namespace):
                return  # only the conversation this socket asked to join
            agent = Sanic.get_app("rasa_server").ctx.agent
            tracker = await agent.tracker_store.retrieve_full_tracker(session_id) if agent else None
            payload = history(list(tracker.events) if tracker else [])
            await sio.emit("history", payload, room=sid, namespace=self.namespace)

        sio.on("history_request", history_request, namespace=self.namespace)
        return blueprint
