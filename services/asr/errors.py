"""One error model for every failure the API reports, shaped like OpenAI's.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` with the matching HTTP status.
Every bad input is an :class:`APIError` raised where it is found; the app turns it into a response.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A failure with an HTTP status, a machine-readable ``code`` and the request parameter it concerns."""

    status: int = 400
    type: str = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidAudio(APIError):
    """The upload is not audio we can decode: empty, corrupt, truncated, unsupported, absurd parameters."""


class UnsupportedFormat(APIError):
    status = 415


class PayloadTooLarge(APIError):
    status = 413


class AuthenticationError(APIError):
    status = 401
    type = "authentication_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class NotFound(APIError):
    status = 404


class Overloaded(APIError):
    """The queue is full: come back later (503 with Retry-After) rather than wait without bound."""

    status = 503
    type = "server_error"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, code="server_overloaded", headers={"Retry-After": str(retry_after_s)})


class EngineUnavailable(APIError):
    status = 503
    type = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="engine_unavailable")
