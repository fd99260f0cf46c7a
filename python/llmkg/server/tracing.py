"""The span of each HTTP request, when tracing is on (``llmkg.tracing``).

A request's span is named after its method and route template (``POST /api/v1/search``;
the method alone for a path no route matches, as OpenTelemetry's HTTP conventions say),
continues the caller's trace when the request carries a W3C ``traceparent``, and holds
the method, route, path, status code and request id. A 5xx marks it failed. The engine's
steps below it (``llmkg.tracing.span``) are its children, also in the worker threads
(``ServerState.run`` carries the context there).

The response carries no ``traceparent``: a caller that sent one knows its trace, and the
``X-Request-ID`` of every response is on the span (``llmkg.request_id``), by which a trace
is found in Jaeger. The health probes are not traced: every few seconds from every
kubelet, they would be most of the traces and none of the interest.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmkg import tracing
from llmkg.server import logs
from llmkg.server.security import ROUTE_KEY

UNTRACED = frozenset({"/health/live", "/health/ready"})


def traced(app: ASGIApp) -> ASGIApp:
    """``app`` with a span per request when tracing is on, else ``app`` itself."""
    return TracingMiddleware(app) if tracing.enabled() else app


class TracingMiddleware:
    """Inside the request middleware: the request id and the route template are known."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        route: str | None = scope.get(ROUTE_KEY)
        parent = tracing.extract(scope["headers"])
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        name = f"{method} {route}" if route else method
        with tracing.entry_span(name, parent) as span:
            # Attributes only on a sampled span: an unsampled request pays for the span's
            # context alone (its calls pass the decision on).
            recording = span is not None and span.is_recording()
            if span is not None and recording:
                span.set_attribute("http.request.method", method)
                span.set_attribute("url.path", scope["path"])
                span.set_attribute("llmkg.request_id", logs.request_id.get() or "")
                if route:
                    span.set_attribute("http.route", route)
            try:
                await self.app(scope, receive, send_status)
            finally:
                if span is not None and recording:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        tracing.fail(span, f"HTTP {status}")
