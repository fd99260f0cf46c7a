"""The security layer: TLS for the API listener, JWT bearer tokens with scopes, a
revocation list of token ids, and token-bucket rate limits: per subject (per client
address when authentication is off), and per client address on failed authentications
and on refreshes.

Tokens are HS256 (or the configured HMAC algorithm) JWTs signed with the bytes of
``secret_key_file``; PyJWT checks them with the algorithm list pinned to the configured
one, so ``alg: none`` or another algorithm never verifies. Refresh tokens carry the claim
``typ: refresh`` and are never accepted as access tokens, nor anything else at refresh;
an access token is llmkg's (``typ: access``) or another issuer's standard one, without a
``typ`` claim or with RFC 9068's ``typ: at+jwt`` header.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmkg.config import Settings
from llmkg.config.schema import AuthenticationSettings, SecuritySettings
from llmkg.server.api import json_response, read_json
from llmkg.server.errors import ApiError
from llmkg.server.models import RefreshRequest, TokenResponse
from llmkg.server.ratelimit import Clock, RateLimiter, per_minute, too_many
from llmkg.server.revocation import RevocationError, RevocationList

log = logging.getLogger("llmkg.server")

MIN_SECRET_BYTES = 32
SCOPES = ("read", "write", "admin")
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class StartupError(RuntimeError):
    """The security config cannot be used; the message names the file."""


def _readable(path_text: str, what: str) -> Path:
    path = Path(path_text)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise StartupError(f"{what} {path}: cannot be read ({e.strerror})") from None
    return path


# ---- TLS -----------------------------------------------------------------------------------


class TlsConfig(uvicorn.Config):
    """uvicorn's config with a floor on the TLS version (uvicorn has no option for it), and
    connections that do not hold up shutdown (see ``_closing_promptly``)."""

    def __init__(self, *args: Any, min_tls_version: ssl.TLSVersion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_tls_version = min_tls_version

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.minimum_version = self.min_tls_version
            self.http_protocol_class = _closing_promptly(self.http_protocol_class)


TLS_CLOSE_GRACE = 1.0  # seconds an idle client gets to answer close_notify at shutdown


def _closing_promptly(protocol: type[Any]) -> type[Any]:
    """At shutdown uvicorn closes idle keep-alive connections; over TLS that close waits for
    the client's close_notify, which a pooled idle client never sends until it next reads:
    SIGTERM then hung for the loop's 30 s SSL shutdown timeout. Abort such connections
    after a short grace instead (the client sees its idle connection drop, as at any
    server restart)."""

    class ClosingPromptly(protocol):
        def shutdown(self) -> None:
            super().shutdown()
            if self.transport.is_closing():
                self.loop.call_later(TLS_CLOSE_GRACE, self._abort_if_open)

        def _abort_if_open(self) -> None:
            if self in self.server_state.connections:
                self.transport.abort()

    return ClosingPromptly


def check_tls_files(security: SecuritySettings) -> None:
    """Refuse missing, unreadable or mismatched certificate and key files, naming them."""
    cert = _readable(security.cert_file, "security.cert_file")
    key = _readable(security.key_file, "security.key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    asked: list[bool] = []

    def no_passphrase() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal and start-up would hang.
        asked.append(True)
        return b""

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as e:
        if asked:
            raise StartupError(
                f"security.key_file {key}: the key is encrypted; llmkg needs it unencrypted"
            ) from None
        raise StartupError(
            f"security.cert_file {cert} and security.key_file {key} do not form a usable "
            f"pair ({e.reason or e})"
        ) from None
    if security.require_client_cert:
        ca = _readable(security.ca_file, "security.ca_file")
        try:
            context.load_verify_locations(ca)
        except ssl.SSLError as e:
            raise StartupError(f"security.ca_file {ca}: not a CA certificate ({e})") from None


def api_config(app: ASGIApp, settings: Settings, **options: Any) -> uvicorn.Config:
    """The API listener's uvicorn config, with TLS when ``security.enable_tls``."""
    security = settings.security
    if not security.enable_tls:
        return uvicorn.Config(app, **options)
    check_tls_files(security)
    return TlsConfig(
        app,
        ssl_certfile=security.cert_file,
        ssl_keyfile=security.key_file,
        ssl_ca_certs=security.ca_file if security.require_client_cert else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if security.require_client_cert else ssl.CERT_NONE,
        min_tls_version=TLS_VERSIONS[security.min_tls_version],
        # TLS 1.2 only (TLS 1.3 suites are set apart in OpenSSL): uvicorn's default
        # takes CBC suites as well.
        ssl_ciphers=security.tls_ciphers,
        **options,
    )


# ---- tokens --------------------------------------------------------------------------------


def read_secret(auth: AuthenticationSettings) -> bytes:
    path = _readable(auth.secret_key_file, "security.authentication.secret_key_file")
    secret = path.read_bytes().rstrip()
    if len(secret) < MIN_SECRET_BYTES:
        state = "empty" if not secret else f"{len(secret)} bytes"
        raise StartupError(
            f"security.authentication.secret_key_file {path}: the secret is {state}; "
            f"it must be at least {MIN_SECRET_BYTES} bytes"
        )
    return secret


def split_scopes(text: str) -> list[str]:
    """The scopes of a ``scope`` claim or option (space- or comma-separated)."""
    return [s for s in re.split(r"[\s,]+", text.strip()) if s]


def parse_scopes(text: str) -> list[str]:
    """The scopes of ``text``, which must be among ``SCOPES`` (at least one)."""
    scopes = split_scopes(text)
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {text!r}")
    return scopes


# JOSE header ``typ`` values of an access token: PyJWT's default, and RFC 9068's (whose
# "application/" prefix may be left out, compared without case).
ACCESS_HEADER_TYPES = ("jwt", "at+jwt")


def token_kind(header: dict[str, Any], claims: dict[str, Any]) -> str | None:
    """ "refresh" for a token marked as one (llmkg's ``typ: refresh`` claim), "access" for
    the others other issuers mint with the shared secret (no ``typ`` claim, or RFC 9068's
    ``typ: at+jwt`` header), None for a type llmkg does not know (refused as either)."""
    claim = claims.get("typ")
    if claim == "refresh":
        return "refresh"
    if claim not in (None, "access"):
        return None
    typ = header.get("typ")
    if typ is None:
        return "access"
    if not isinstance(typ, str):
        return None
    typ = typ.lower().removeprefix("application/")
    return "access" if typ in ACCESS_HEADER_TYPES else None


class Tokens:
    def __init__(self, auth: AuthenticationSettings, revoked: RevocationList | None = None) -> None:
        self.auth = auth
        self.secret = read_secret(auth)
        self.revoked = revoked

    def mint(self, subject: str, scopes: list[str], kind: str, expiry: float) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "scope": " ".join(scopes),
            "typ": kind,
            "iat": now,
            "nbf": now,
            "exp": now + int(expiry),
            "jti": uuid.uuid4().hex,
        }
        if self.auth.audience:
            claims["aud"] = self.auth.audience
        if self.auth.issuer:
            claims["iss"] = self.auth.issuer
        return jwt.encode(claims, self.secret, algorithm=self.auth.algorithm)

    def pair(self, subject: str, scopes: list[str], expiry: float | None = None) -> dict[str, Any]:
        access_expiry = expiry or self.auth.token_expiry
        return {
            "access_token": self.mint(subject, scopes, "access", access_expiry),
            "refresh_token": self.mint(subject, scopes, "refresh", self.auth.refresh_token_expiry),
            "token_type": "Bearer",
            "expires_in": int(access_expiry),
        }

    def verify(self, token: str, kind: str) -> dict[str, Any]:
        """The claims of a valid ``kind`` token; ``jwt.InvalidTokenError`` otherwise."""
        decoded = jwt.decode_complete(
            token,
            self.secret,
            algorithms=[self.auth.algorithm],
            audience=self.auth.audience or None,
            issuer=self.auth.issuer or None,
            options={"require": ["exp", "iat", "sub"]},
        )
        claims: dict[str, Any] = decoded["payload"]
        if token_kind(decoded["header"], claims) != kind:
            raise jwt.InvalidTokenError(
                f"not {'a refresh' if kind == 'refresh' else 'an access'} token"
            )
        if not isinstance(claims.get("scope", ""), str):
            raise jwt.InvalidTokenError("scope must be a string")
        if self.revoked is not None and claims.get("jti") in self.revoked:
            raise jwt.InvalidTokenError("the token is revoked")
        return claims


# ---- the middleware ------------------------------------------------------------------------

# Route template -> method -> the scope it needs (None: open).
Guards = dict[str, dict[str, str | None]]
# Where the request middleware leaves the route template it matched the path to (None:
# no route), so that the path is matched once per request.
ROUTE_KEY = "llmkg.route"


class Security:
    """``clock``: the monotonic clock of the rate limits (tests move it)."""

    def __init__(self, settings: Settings, clock: Clock = time.monotonic) -> None:
        security = settings.security
        auth = security.authentication
        self.tokens: Tokens | None = None
        # Per client address: failed authentications (an address past the limit is refused
        # everything guarded, good tokens too, until its bucket refills: a guessed token
        # must not get through) and refreshes.
        self.failures: RateLimiter | None = None
        self.refreshes: RateLimiter | None = None
        if auth.type == "jwt":
            revoked = None
            if auth.revoked_tokens_file:
                try:
                    revoked = RevocationList(auth.revoked_tokens_file, clock)
                except RevocationError as e:
                    raise StartupError(str(e)) from None
            self.tokens = Tokens(auth, revoked)
            self.failures = per_minute(auth.auth_failures_per_minute, clock)
            self.refreshes = per_minute(auth.refresh_per_minute, clock)
        limit = security.rate_limit
        self.limiter = (
            RateLimiter(limit.requests_per_second, limit.burst, clock) if limit.enabled else None
        )

    def check_failures(self, client: str) -> None:
        """429 while ``client`` is over the limit of failed authentications."""
        if self.failures is not None:
            wait = self.failures.wait(client)
            if wait > 0:
                raise too_many(wait, "too many failed authentications from this address")

    def failed(self, client: str, error: ApiError) -> ApiError:
        """Count a failed authentication of ``client``; ``error``, to raise."""
        if self.failures is not None and self.failures.take(client) == 0:
            if self.failures.wait(client) > 0:
                log.warning(
                    "too many failed authentications from %s: refused until it slows down",
                    client,
                )
        return error

    def refresh_endpoint(self) -> Callable[[Request], Awaitable[Response]] | None:
        tokens = self.tokens
        if tokens is None:
            return None

        async def refresh(request: Request) -> Response:
            client = request.client.host if request.client else "unknown"
            self.check_failures(client)
            if self.refreshes is not None:
                wait = self.refreshes.take(client)
                if wait > 0:
                    raise too_many(wait, "too many refreshes from this address")
            body = await read_json(request, RefreshRequest, 64 * 1024)
            try:
                claims = tokens.verify(body.refresh_token, "refresh")
                scopes = parse_scopes(claims.get("scope", ""))
            except (jwt.InvalidTokenError, ValueError) as e:
                raise self.failed(client, unauthorized(f"invalid refresh token: {e}")) from None
            access = tokens.mint(claims["sub"], scopes, "access", tokens.auth.token_expiry)
            return json_response(TokenResponse(access, "Bearer", int(tokens.auth.token_expiry)))

        return refresh

    def middleware(self, app: ASGIApp, guards: Guards) -> ASGIApp:
        return SecurityMiddleware(app, self, guards)


def unauthorized(message: str, error: str | None = "invalid_token") -> ApiError:
    """401 with the RFC 6750 challenge (no error code when no token was sent at all)."""
    challenge = 'Bearer realm="llmkg"' + (f', error="{error}"' if error else "")
    return ApiError(401, message, headers={"WWW-Authenticate": challenge})


def forbidden(needed: str) -> ApiError:
    challenge = f'Bearer realm="llmkg", error="insufficient_scope", scope="{needed}"'
    return ApiError(
        403, f"the token lacks the '{needed}' scope", headers={"WWW-Authenticate": challenge}
    )


class SecurityMiddleware:
    """Runs inside the request middleware, which has matched the path to its route
    template (``scope[ROUTE_KEY]``)."""

    def __init__(self, app: ASGIApp, security: Security, guards: Guards) -> None:
        self.app, self.security, self.guards = app, security, guards

    def guard(self, method: str, route: str | None) -> tuple[bool, str | None]:
        """(needs a token, the scope it needs). Fails closed: HEAD is checked as the GET
        Starlette answers it with, and another method on a guarded path still needs a
        valid token (None: any scope) before it learns the 405."""
        by_method = self.guards.get(route) if route is not None else None
        if by_method is None:
            return False, None  # no such route: the 404 tells nothing
        method = "GET" if method == "HEAD" else method
        if method in by_method:
            needed = by_method[method]
            return needed is not None, needed
        return any(n is not None for n in by_method.values()), None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guarded, needed = self.guard(scope["method"], scope[ROUTE_KEY])
        if not guarded:
            await self.app(scope, receive, send)
            return
        try:
            key = self.authorize(scope, needed)
            if self.security.limiter is not None:
                wait = self.security.limiter.take(key)
                if wait > 0:
                    raise too_many(wait)
        except ApiError as e:
            await e.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def authorize(self, scope: Scope, needed: str | None) -> str:
        """The rate-limit key of an allowed request (its subject, or its address)."""
        tokens = self.security.tokens
        client = (scope.get("client") or ("unknown", 0))[0]
        if tokens is None:
            return f"addr:{client}"
        self.security.check_failures(client)
        try:
            claims = tokens.verify(bearer_token(scope), "access")
        except jwt.InvalidTokenError as e:
            raise self.security.failed(client, unauthorized(f"invalid token: {e}")) from None
        except ApiError as e:
            raise self.security.failed(client, e) from None
        granted = split_scopes(claims.get("scope", ""))
        if needed is not None and needed not in granted:
            raise forbidden(needed)
        return f"sub:{claims['sub']}"


def bearer_token(scope: Scope) -> str:
    header = dict(scope["headers"]).get(b"authorization")
    if header is None:
        raise unauthorized("missing bearer token (Authorization: Bearer <token>)", None)
    parts = header.decode("latin-1").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise unauthorized(
            "malformed Authorization header; expected 'Bearer <token>'", "invalid_request"
        )
    return parts[1]
