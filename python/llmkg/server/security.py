"""The security layer of the API: bearer tokens checked against each route's scope
(``tokens.py``), a revocation list of token ids, and token-bucket rate limits: per
subject (per client address when authentication is off), and per client address on
failed authentications and on refreshes. TLS is ``tls.py``."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import jwt
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmkg.config import Settings
from llmkg.server.api import json_response, read_json
from llmkg.server.errors import ApiError
from llmkg.server.models import RefreshRequest, TokenResponse
from llmkg.server.ratelimit import Clock, RateLimiter, per_minute, too_many
from llmkg.server.revocation import RevocationError, RevocationList
from llmkg.server.startup import StartupError
from llmkg.server.tokens import Tokens, parse_scopes, split_scopes

log = logging.getLogger("llmkg.server")


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
            except jwt.ExpiredSignatureError as e:
                error = expired(f"invalid refresh token: {e}")
                raise self.failed(client, error) from None
            except (jwt.InvalidTokenError, ValueError) as e:
                raise self.failed(client, unauthorized(f"invalid refresh token: {e}")) from None
            access = tokens.mint(claims["sub"], scopes, "access", tokens.auth.token_expiry)
            return json_response(TokenResponse(access, "Bearer", int(tokens.auth.token_expiry)))

        return refresh

    def middleware(self, app: ASGIApp, guards: Guards) -> ASGIApp:
        return SecurityMiddleware(app, self, guards)


def unauthorized(
    message: str, error: str | None = "invalid_token", code: str | None = None
) -> ApiError:
    """401 with the RFC 6750 challenge (no error code when no token was sent at all)."""
    challenge = 'Bearer realm="llmkg"' + (f', error="{error}"' if error else "")
    return ApiError(401, message, code=code, headers={"WWW-Authenticate": challenge})


def expired(message: str) -> ApiError:
    """401 for a token of ours that is past its ``exp`` (its signature checked first):
    the code ``token_expired`` tells a client that a refresh, not a new login, helps."""
    return unauthorized(message, code="token_expired")


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
        except jwt.ExpiredSignatureError as e:
            raise self.security.failed(client, expired(f"invalid token: {e}")) from None
        except jwt.InvalidTokenError as e:
            raise self.security.failed(client, unauthorized(f"invalid token: {e}")) from None
        except ApiError as e:
            raise self.security.failed(client, e) from None
        granted = split_scopes(claims.get("scope", ""))
        if needed is not None and needed not in granted:
            raise forbidden(needed)
        return f"sub:{claims['sub']}"


def bearer_token(scope: Scope) -> str:
    header: bytes | None = dict(scope["headers"]).get(b"authorization")
    if header is None:
        raise unauthorized("missing bearer token (Authorization: Bearer <token>)", None)
    parts = header.decode("latin-1").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise unauthorized(
            "malformed Authorization header; expected 'Bearer <token>'", "invalid_request"
        )
    return parts[1]
