"""The client's errors: one class per kind of answer, each carrying what the server's JSON
error body says (``{"error": {"code", "message", "field"?}}``), so that callers switch on
the class or on ``code`` rather than on text.

No httpx here: ``llmkg.ApiError`` stays cheap to import for code that only catches it.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

import msgspec


class ApiError(Exception):
    """Any failure of a call: the server's error answer (``status`` set) or no answer at
    all (``ApiConnectionError``, ``status`` None).

    ``code`` is the server's machine-readable code (``invalid_field``, ``not_found``,
    ``token_expired``, ...), ``field`` the request field it names (``fact.confidence``,
    ``query.k``, ``node_id``), ``request_id`` the ``X-Request-ID`` the server logged the
    request under, ``retry_after`` the seconds of its ``Retry-After`` header."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        field: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        where = f" ({field})" if field else ""
        prefix = f"{status} {code}" if status is not None else code
        super().__init__(f"{prefix}{where}: {message}")
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.request_id = request_id
        self.retry_after = retry_after


class ApiConnectionError(ApiError):
    """No answer: the connection was refused or broke, or TLS failed."""


class ApiTimeoutError(ApiConnectionError):
    """No answer within the call's ``timeout`` (its retries included)."""


class BadRequestError(ApiError):
    """A 4xx refusal of the request itself (400, 405, 413, 415 and others)."""


class ValidationError(BadRequestError):
    """422: a missing, unknown, mistyped or out-of-range field, named in ``field``."""


class UnauthorizedError(ApiError):
    """401: no token, or a token refused (``code == "token_expired"`` when it expired)."""


class ForbiddenError(ApiError):
    """403: the token lacks the route's scope."""


class NotFoundError(ApiError):
    """404: no such node or entity (``field`` names it), or no such route."""


class ConflictError(BadRequestError):
    """409: the request conflicts with the server's state (e.g. a backup of PostgreSQL)."""


class RateLimitedError(ApiError):
    """429: over a rate limit; ``retry_after`` says when to come back."""


class ServerError(ApiError):
    """A 5xx: the server failed (500), ran out of time (504) or of disk (507)."""


class UnavailableError(ServerError):
    """503: loading or shutting down, the store cannot commit, the index linker is failing;
    usually with ``retry_after``."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
    503: UnavailableError,
}

# The server's codes by status (server/errors.py), for error bodies that are not its JSON:
# a proxy's page, uvicorn's plain-text 503 past ``server.max_connections``.
_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
    504: "timeout",
    507: "storage_full",
}
MESSAGE_SHOWN = 500  # characters of a body that is not the server's JSON error


class _ErrorBody(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class _ErrorAnswer(msgspec.Struct):
    error: _ErrorBody


_DECODER = msgspec.json.Decoder(_ErrorAnswer)


def error_class(status: int) -> type[ApiError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    if status >= 400:
        return BadRequestError
    return ApiError  # a status the API never answers (1xx/3xx): reported, not decoded


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date (RFC 9110); None
    when absent or unreadable. ``now``: the wall-clock time the date is measured from."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def error_from_answer(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    """The error of an answer with ``status`` >= 400 (or any status not expected)."""
    try:
        parsed = _DECODER.decode(body).error
        code, message, field = parsed.code, parsed.message, parsed.field
    except msgspec.DecodeError:  # (ValidationError is a DecodeError)
        code = _DEFAULT_CODES.get(status, "error")
        message = body[:MESSAGE_SHOWN].decode("utf-8", "replace").strip() or f"HTTP {status}"
        field = None
    return error_class(status)(
        message,
        status=status,
        code=code,
        field=field,
        request_id=headers.get("x-request-id"),
        retry_after=retry_after_seconds(headers.get("retry-after")),
    )
