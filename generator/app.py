"""The FastAPI app: thin routes, the lifespan that loads the models, and the one place
where every error becomes an HTTP status plus an OpenAI error body.

The models load in a background thread started by the lifespan, so the process
answers /health/live (and /health with 503) during the first, slow start instead of
refusing connections.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from typing import Awaitable, Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import APIError, ClientDisconnected, Unauthorized
from .logs import RequestIdMiddleware, adopt_library_loggers
from .metrics import Metrics, MetricsMiddleware
from .protocol import ChatCompletionRequest, EmbeddingRequest, ErrorInfo, ErrorResponse
from .serving import Service
from .settings import Settings, force_offline

log = logging.getLogger("generator")

# FastAPI/Starlette's own HTTP errors: unknown path, wrong method, unreadable or huge body.
_HTTP_ERRORS = {400: ("invalid_request_error", "invalid_body"), 404: ("not_found_error", "not_found"),
                405: ("invalid_request_error", "method_not_allowed"),
                413: ("invalid_request_error", "request_too_large")}


def error_response(status: int, message: str, error_type: str, code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=error_type, code=code, param=param))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "the request body is not valid JSON", None, "invalid_json"
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    if param is None:  # the body as a whole: absent, or not a JSON object
        return "the request body must be a JSON object", None, "invalid_request"
    return f"{param}: {first.get('msg', 'invalid value')}", param, "invalid_request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return error_response(exc.status_code, exc.message, exc.error_type, exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        message, param, code = _validation_message(exc)
        return error_response(400, message, "invalid_request_error", code, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        # 400 here is FastAPI failing to read the body (e.g. not UTF-8): still the client's fault.
        error_type, code = _HTTP_ERRORS.get(exc.status_code, ("invalid_request_error", None))
        return error_response(exc.status_code, str(exc.detail), error_type, code,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal server error", "server_error", "internal_error")


class BodyLimitMiddleware:
    """413 with an OpenAI body for oversized requests (FastAPI's own limit answers in plain text)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is larger than {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            response = error_response(413, message, "invalid_request_error", "request_too_large")
            return await response(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.max_bytes:  # chunked upload without Content-Length
                raise HTTPException(413, message)  # FastAPI re-raises this kind to our handler
            return event

        await self.app(scope, counting_receive, send)


async def _unless_disconnected(request: Request, work: Awaitable):
    """Await work, but give up (which cancels the generation) if the client hangs up.

    A caller that timed out (the action server has its own deadline) would otherwise
    keep a place in the batch busy for a reply nobody reads.
    """
    task = asyncio.ensure_future(work)

    async def hang_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientDisconnected("the client closed the connection before the reply was ready")
    finally:
        watcher.cancel()
        task.cancel()


# Imported inside the loader thread: torch and transformers take seconds to import,
# which must not hold up the event loop (the port answers /health/live meanwhile).
def _load_embedding_engine(settings: Settings):
    from .embeddings import SentenceTransformerEngine

    adopt_library_loggers()

    return SentenceTransformerEngine.load(settings)


def _load_chat_engine(settings: Settings):
    from .chat import TransformersChatEngine

    adopt_library_loggers()

    return TransformersChatEngine.load(settings)


async def _load_models(service: Service, on_failure: Callable[[BaseException], None] | None) -> None:
    started = time.monotonic()
    try:
        if service.embedding_engine is None:
            service.embedding_engine = await asyncio.to_thread(_load_embedding_engine, service.settings)
        if service.chat_engine is None:
            service.chat_engine = await asyncio.to_thread(_load_chat_engine, service.settings)
            service.owns_chat_engine = True
    except Exception as exc:
        service.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("loading the models failed")
        if on_failure is not None:
            on_failure(exc)
        return
    log.info("generator ready on http://%s:%d in %.1f s, models: %s", service.settings.host,
             service.settings.port, time.monotonic() - started, ", ".join(service.model_ids()))


def create_app(settings: Settings | None = None, *, chat_engine=None, embedding_engine=None,
               on_load_failure: Callable[[BaseException], None] | None = None) -> FastAPI:
    """Build the app; engines passed in (already loaded) are used instead of loading."""
    settings = settings or Settings.from_env()
    force_offline()
    service = Service(settings)
    service.chat_engine, service.embedding_engine = chat_engine, embedding_engine
    metrics = Metrics(service)
    service.metrics = metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = None if service.ready else asyncio.create_task(_load_models(service, on_load_failure))
        yield
        if loader is not None and not loader.done():
            loader.cancel()
        service.shutdown()

    app = FastAPI(title="generator", summary="OpenAI-compatible chat and embeddings on CPU",
                  lifespan=lifespan)
    app.state.service = service
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line of a request has its id
    _install_error_handlers(app)

    async def require_api_key(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        valid = hmac.compare_digest(token.strip().encode(), settings.api_key.encode())
        if scheme.lower() != "bearer" or not valid:
            raise Unauthorized("missing or wrong API key (expected 'Authorization: Bearer <key>')")

    guarded = [Depends(require_api_key)]

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        if body.stream:
            events = await _unless_disconnected(request, service.chat_stream(body))
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return JSONResponse((await _unless_disconnected(request, service.chat(body))).model_dump(mode="json"))

    @app.post("/v1/embeddings", dependencies=guarded)
    async def embeddings(body: EmbeddingRequest):
        return JSONResponse((await service.embed(body)).model_dump(mode="json"))

    @app.get("/v1/models", dependencies=guarded)
    async def models():
        return JSONResponse(service.models().model_dump(mode="json"))

    @app.get("/health")
    async def health():
        if service.ready:
            return {"status": "ok", "models": service.model_ids()}
        status = "error" if service.load_error else "loading"
        body = {"status": status, "models": service.model_ids()}
        if service.load_error:
            body["error"] = service.load_error
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @app.get("/health/live")
    async def live():
        return {"status": "alive"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    return app
