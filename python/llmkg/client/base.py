"""What the synchronous and the asynchronous client share: their options, the tokens they
hold, the headers of a call, the reading of an answer and the decision after an error.
Only the sending (and the sleeping) differs between them."""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Literal, TypeVar

import certifi
import httpx
import msgspec

from llmkg import __version__
from llmkg.client.calls import Call
from llmkg.client.errors import ApiConnectionError, ApiError, ApiTimeoutError, error_from_answer
from llmkg.client.retry import Attempts, RetryPolicy

T = TypeVar("T")
StrPath = str | os.PathLike[str]
# A CA bundle to trust (a file), True (the usual public CAs), False (no checks: tests
# only), or a ready context.
Verify = bool | StrPath | ssl.SSLContext
# The client certificate (with its key in the same file) or (certificate, key).
Cert = StrPath | tuple[StrPath, StrPath]
DEFAULT_TIMEOUT = 30.0
# After an error: refresh the access token and send again, wait that many seconds and
# send again (the error is raised otherwise).
Step = Literal["refresh"] | float


def tls(verify: Verify, cert: Cert | None) -> ssl.SSLContext | bool:
    """What httpx takes as ``verify``: a context with the CA file and the client
    certificate (httpx's own ``cert=`` and path ``verify=`` are deprecated)."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True or verify is False:
        if cert is None:
            return verify
        # httpx's default trust (certifi), and the certificate below.
        context = ssl.create_default_context(cafile=certifi.where())
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=os.fspath(verify))
    if cert is not None:
        certfile, keyfile = cert if isinstance(cert, tuple) else (cert, None)
        context.load_cert_chain(
            os.fspath(certfile), None if keyfile is None else os.fspath(keyfile)
        )
    return context


def read_answer(call: Call[T], status: int, body: bytes, headers: Mapping[str, str]) -> T:
    """``call``'s result from its answer, or the ``ApiError`` to raise."""
    if status in call.answers:
        try:
            return call.decode(body)
        except msgspec.DecodeError as e:
            if status >= 400:  # e.g. uvicorn's plain-text 503 at a probe
                raise error_from_answer(status, body, headers) from None
            raise ApiError(
                f"the answer is not what the API answers: {e}",
                status=status,
                code="invalid_response",
                request_id=headers.get("x-request-id"),
            ) from None
    error = error_from_answer(status, body, headers)
    if status == 404 and call.absent is not None and error.field is not None:
        return call.absent()
    raise error


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """httpx's transport errors as the client's: the call got no answer."""
    try:
        yield
    except httpx.TimeoutException as e:
        raise ApiTimeoutError(f"no answer from {url} in time: {e!r}") from e
    except httpx.TransportError as e:
        raise ApiConnectionError(f"no answer from {url}: {e!r}") from e


class ClientBase:
    def __init__(
        self,
        url: str,
        token: str | None,
        refresh_token: str | None,
        timeout: float,
        retry: RetryPolicy | None,
        clock: Callable[[], float],
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.url = url.rstrip("/")
        self._token = token
        self._refresh_token = refresh_token
        self._timeout = timeout
        self._retry = RetryPolicy() if retry is None else retry
        self._clock = clock

    @property
    def token(self) -> str | None:
        """The access token sent now (a refresh replaces it)."""
        return self._token

    @property
    def refresh_token(self) -> str | None:
        return self._refresh_token

    def _default_headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        return {
            "User-Agent": f"llmkg-client/{__version__}",
            "Accept": "application/json",
            **(extra or {}),
        }

    def _headers(self, call: Call[T], token: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if call.authorized and token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def _attempts(self, call: Call[T]) -> Attempts:
        return Attempts(self._retry, call.idempotent, call.authorized, self._timeout, self._clock)

    def _step(self, attempts: Attempts, error: ApiError) -> Step:
        """What to do after ``error``; raises it when nothing is left to try."""
        if attempts.should_refresh(error, self._refresh_token is not None):
            return "refresh"
        wait = attempts.retry_wait(error)
        if wait is None:
            raise error
        return wait

    def _refreshing(self) -> str:
        if self._refresh_token is None:
            raise ValueError("this client holds no refresh token")
        return self._refresh_token
