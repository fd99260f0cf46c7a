"""Errors as the API answers them: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec
from starlette.responses import Response

from llmkg.store.errors import StoreError, StoreUnavailableError
from llmkg.store.failures import storage_failure

log = logging.getLogger("llmkg.server")


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: str  # what a client can switch on: one per status, or the case's own
    message: str  # for people
    field: str | None = None  # the field or parameter refused, when one is (`facts[3].subject`)


class ErrorResponse(msgspec.Struct):
    """Every error's answer."""

    error: ErrorBody


# Status -> the code a client can switch on (beside the per-case codes raised by name).
CODES = {
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
# How long a client should wait before retrying after a storage failure other than a full
# disk (which lasts until an operator frees space).
STORE_RETRY_AFTER = "1"  # the store's writer retries a failed connection every second


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = ErrorResponse(ErrorBody(code or CODES.get(status, "error"), message, field))
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


class ApiError(Exception):
    """Raised by a handler to answer with an error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.field = status, message, code, field
        self.headers = headers

    def response(self) -> Response:
        return error_response(
            self.status, self.message, code=self.code, field=self.field, headers=self.headers
        )


def storage_error(exc: BaseException) -> ApiError | None:
    """The answer to a failure of the storage, or None when ``exc`` is not one: 507 when
    the disk is full (nothing was stored; reads still work), 503 with ``Retry-After`` for
    any other I/O failure of the store or of an index snapshot."""
    kind = storage_failure(exc)
    if kind is None:
        return None
    log.warning("storage failure (%s): %s", kind, exc)
    if kind == "full":
        return ApiError(507, "the data directory's disk is full: nothing was written")
    return ApiError(
        503,
        # A database's address is for the logs (above), not for clients.
        str(exc)
        if isinstance(exc, StoreError) and not isinstance(exc, StoreUnavailableError)
        else "the store cannot be reached right now",
        code="store_unavailable",
        headers={"Retry-After": STORE_RETRY_AFTER},
    )


def storage_answer(exc: StoreError) -> ApiError:
    """The answer to the store's own error (a commit that failed, a write past its
    deadline): always a storage failure."""
    answer = storage_error(exc)
    assert answer is not None, "storage_failure counts every StoreError"
    return answer
