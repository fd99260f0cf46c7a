"""The API's ASGI app: routes with their scopes, the request middleware (request id,
access log, metrics), JSON errors for everything, and the lifespan that loads the engine
in the background (so ``/health/live`` answers while it loads) and closes it at the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmkg.engine import EngineClosedError, FactError, LinkerError, NotCaughtUpError
from llmkg.partition.types import PartitionCallError
from llmkg.router.router import PartitionsUnavailableError
from llmkg.server import logs
from llmkg.server.api import Api, json_response
from llmkg.server.errors import (
    STORE_RETRY_AFTER,
    ApiError,
    error_response,
    storage_answer,
    storage_error,
)
from llmkg.server.exportapi import ExportApi
from llmkg.server.graphapi import GraphApi
from llmkg.server.health import Health
from llmkg.server.openapi import openapi_document
from llmkg.server.security import ROUTE_KEY, Guards, Security
from llmkg.server.state import ServerState
from llmkg.server.tracing import traced
from llmkg.store import StoreError

log = logging.getLogger("llmkg.server")
access = logging.getLogger("llmkg.access")

Handler = Callable[[Request], Awaitable[Response]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    scope: str | None  # the token scope it needs (None: open, e.g. probes)
    name: str


def endpoints(state: ServerState, health: Health, security: Security) -> list[Endpoint]:
    api = Api(state)
    graph = GraphApi(state)
    exports = ExportApi(state)

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document(state.settings))

    refresh = security.refresh_endpoint()
    return [
        *([Endpoint("POST", "/api/v1/auth/refresh", refresh, None, "refresh")] if refresh else []),
        Endpoint("POST", "/api/v1/allocate", api.allocate, "write", "allocate"),
        Endpoint("POST", "/api/v1/allocate/batch", api.allocate_batch, "write", "allocate_batch"),
        Endpoint("POST", "/api/v1/search", api.search, "read", "search"),
        Endpoint("GET", "/api/v1/nodes/{node_id}", api.get_node, "read", "get_node"),
        Endpoint("DELETE", "/api/v1/nodes/{node_id}", api.delete_node, "write", "delete_node"),
        Endpoint("GET", "/api/v1/nodes/{node_id}/children", graph.children, "read", "children"),
        Endpoint("GET", "/api/v1/nodes/{node_id}/ancestors", graph.ancestors, "read", "ancestors"),
        Endpoint("GET", "/api/v1/facts", graph.facts, "read", "facts"),
        Endpoint("GET", "/api/v1/entities", graph.entities, "read", "entities"),
        # `:path`: a name may hold a slash (sent as %2F, which arrives decoded).
        Endpoint("GET", "/api/v1/entities/{name:path}", graph.entity, "read", "entity"),
        Endpoint("POST", "/api/v1/traverse", graph.traverse, "read", "traverse"),
        Endpoint("GET", "/api/v1/export", exports.export, "read", "export"),
        Endpoint("GET", "/api/v1/stats", api.stats, "admin", "stats"),
        Endpoint("POST", "/api/v1/admin/checkpoint", api.checkpoint, "admin", "checkpoint"),
        Endpoint("POST", "/api/v1/admin/backup", api.backup, "admin", "backup"),
        Endpoint("GET", "/health/live", health.live, None, "live"),
        Endpoint("GET", "/health/ready", health.ready, None, "ready"),
        Endpoint("GET", "/openapi.json", openapi, None, "openapi"),
    ]


# Seconds a client should wait before retrying a request refused for a fault that the
# server works on by itself (the store's writer retries every second, the linker backs off).
RETRY_AFTER = {"Retry-After": STORE_RETRY_AFTER}


def guarded(handler: Handler, timeout: float) -> Handler:
    """Errors as JSON: 503 with ``Retry-After`` while shutting down, when the index linker
    is failing, or when the store cannot commit (``storage_error``: 507 when its disk is
    full; a wait past its deadline included: nothing was acknowledged, and allocations are
    idempotent); 504 for a request running past ``server.request_timeout`` (the engine
    call it waits on finishes in its worker thread; its answer is dropped)."""

    async def endpoint(request: Request) -> Response:
        try:
            if sys.version_info >= (3, 11):
                # A deadline on the running task: `wait_for` runs the handler as a task of
                # its own, two more turns of the event loop per request, each behind every
                # callback queued under load.
                async with asyncio.timeout(timeout or None):
                    return await handler(request)
            return await asyncio.wait_for(handler(request), timeout or None)  # 3.10
        except ApiError as e:
            return e.response()
        except FactError as e:
            return error_response(422, e.message, code="invalid_field", field=e.field)
        except EngineClosedError:
            return error_response(
                503, "the server is shutting down", code="not_ready", headers=RETRY_AFTER
            )
        # Before TimeoutError: the linker's, the follower's and the store's deadlines raise
        # TimeoutErrors too.
        except NotCaughtUpError as e:
            # Not served stale: a 200 could miss a write that another server acknowledged.
            return error_response(503, str(e), code="not_caught_up", headers=RETRY_AFTER)
        except LinkerError as e:
            return error_response(503, str(e), code="index_unavailable", headers=RETRY_AFTER)
        except PartitionsUnavailableError as e:
            # Never placed on partial candidates, never a silently partial search.
            return error_response(503, str(e), code="partition_unavailable", headers=RETRY_AFTER)
        except PartitionCallError as e:
            return partition_call_answer(e)
        except StoreError as e:
            return storage_answer(e).response()
        except asyncio.TimeoutError:
            return error_response(504, "the request took longer than server.request_timeout")
        except Exception as e:
            answer = storage_error(e)
            if answer is None:
                raise
            return answer.response()

    return endpoint


def partition_call_answer(e: PartitionCallError) -> Response:
    """A call to one partition (a get) that failed: a field the peer refused is the
    client's (422); anything else, the partition's (503)."""
    import grpc

    if e.code == grpc.StatusCode.INVALID_ARGUMENT:
        return error_response(422, e.message, code="invalid_field", field=e.field)
    return error_response(503, str(e), code="partition_unavailable", headers=RETRY_AFTER)


class RequestMiddleware:
    """Request id (the client's ``X-Request-ID`` when sane, else a new one), then after the
    response: the access log line and the request metrics by route template."""

    def __init__(
        self, app: ASGIApp, state: ServerState, routes: list[tuple[re.Pattern[str], str]]
    ) -> None:
        self.app, self.state, self.routes = app, state, routes
        self.access_log = state.settings.logging.access_log

    def route_of(self, path: str) -> str | None:
        """The route template of ``path``, or None."""
        return next((t for pattern, t in self.routes if pattern.fullmatch(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Matched once, for the security layer (it needs the route's scope) and for the
        # metrics label (also of requests refused before routing; "unmatched" keeps the
        # labels few whatever paths clients send).
        route = scope[ROUTE_KEY] = self.route_of(scope["path"])
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else os.urandom(8).hex()
        token = logs.request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            label = route or "unmatched"
            method = scope["method"]
            metrics = self.state.metrics
            metrics.requests.labels(label, method, str(status)).inc()
            metrics.request_duration.labels(label, method).observe(elapsed)
            if self.access_log:
                access.info(
                    "%s %s %d",
                    method,
                    scope["path"],
                    status,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": label,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
            logs.request_id.reset(token)


def build_app(state: ServerState) -> ASGIApp:
    """The API app: the security layer (authentication, rate limits) sits inside the
    request middleware, so that its refusals are logged and counted too; a request's
    span (when tracing is on) between the two, so that refusals are traced and the span
    knows the request id. Raises ``StartupError`` for an unusable secret."""
    security = Security(state.settings)
    health = Health(state)
    table = endpoints(state, health, security)
    timeout = state.settings.server.request_timeout
    routes = []
    for e in table:
        endpoint = guarded(e.handler, timeout)
        routes.append(Route(e.path, endpoint, methods=[e.method], name=e.name))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such route", 405: "method not allowed on this route"}
        return error_response(
            exc.status_code,
            message.get(exc.status_code, str(exc.detail)),
            headers=exc.headers,
        )

    async def crash(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal error; the request id is in the logs")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        blocking = state.settings.performance.max_blocking_threads
        anyio.to_thread.current_default_thread_limiter().total_tokens = blocking
        loader = asyncio.create_task(state.start())
        try:
            yield
        finally:
            await loader
            await state.stop()

    app: ASGIApp = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: crash},
        lifespan=lifespan,
    )
    guards: Guards = {}
    for e in table:
        guards.setdefault(e.path, {})[e.method] = e.scope
    templates = [(_pattern(t), t) for t in guards]
    return RequestMiddleware(traced(security.middleware(app, guards)), state, templates)


def _pattern(path: str) -> re.Pattern[str]:
    path = re.sub(r"\{[a-z_]+:path\}", ".+", path)
    return re.compile(re.sub(r"\{[a-z_]+\}", "[^/]+", path))
