"""Typed errors raised below the routes; app.py turns every one into an OpenAI error body.

Keeping status codes here (and only here) means the engine and the serving layer never
think about HTTP, and every client sees the same ``{"error": {...}}`` shape.
"""

from __future__ import annotations


class APIError(Exception):
    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(APIError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class InputTooLong(InvalidRequest):
    code = "context_length_exceeded"


class Unauthorized(APIError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class BodyTooLarge(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class Overloaded(APIError):
    """The wait queue is full: the client should retry later rather than pile up."""

    status_code = 503
    error_type = "overloaded_error"
    code = "queue_full"


class NotReady(APIError):
    status_code = 503
    error_type = "overloaded_error"
    code = "model_loading"


class ClientDisconnected(APIError):
    """Nobody reads this answer; 499 (nginx's code) keeps it apart from server errors in metrics."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"


class Timeout(APIError):
    status_code = 504
    error_type = "timeout_error"
    code = "timeout"


class Cancelled(Exception):
    """Raised inside the worker when a job's caller gave up (disconnect or timeout)."""
