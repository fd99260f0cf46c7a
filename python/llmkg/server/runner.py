"""Serving: the API listener and the metrics listener in one event loop (uvloop, httptools),
and the shutdown sequence.

SIGTERM: readiness turns false at once, while every other request is still served; after
``server.drain_delay`` (time for load balancers to notice) the listeners close, in-flight
requests finish (at most ``server.shutdown_timeout``), the engine writes a final
checkpoint and closes the store; exit 0. SIGINT (Ctrl-C) skips the delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
import uvloop

from llmkg import tracing
from llmkg.config import Settings, masked, to_builtins
from llmkg.server.app import build_app
from llmkg.server.logs import setup_logging
from llmkg.server.startup import StartupError
from llmkg.server.state import ServerState
from llmkg.server.tls import api_config

log = logging.getLogger("llmkg.server")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling (the runner owns the signals, so
    that one SIGTERM drains both listeners in order)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    s = settings.server
    return {
        "host": s.bind_address,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "date_header": True,
        "timeout_keep_alive": max(1, round(s.connection_timeout)),
        "timeout_graceful_shutdown": max(1, round(s.shutdown_timeout)),
    }


def listen(host: str, port: int, what: str) -> socket.socket:
    """A listening socket, bound before anything starts: a port in use is one clear
    error, not a half-started server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise StartupError(f"{what} {host}:{port}: cannot listen ({reason})") from None
    sock.set_inheritable(True)
    return sock


# How long a thread may hold the GIL while another waits for it (CPython's default is 5 ms).
# Worker threads come back from the index and SQLite many times per request: with the
# default, each return can wait 5 ms behind the event loop.
GIL_SWITCH_INTERVAL = 0.0003


# The cyclic collector's first generation runs every 700 allocations by default; the
# server allocates thousands of short-lived objects per request (almost none cyclic), and
# each full collection walks every cached record: fewer, larger young collections.
GC_THRESHOLDS = (50_000, 20, 100)


def serve(settings: Settings) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    gc.set_threshold(*GC_THRESHOLDS)
    setup_logging(settings.logging, os.environ.get("RUST_LOG"))
    log.debug("effective config: %s", json.dumps(masked(to_builtins(settings))))
    threading.stack_size(max(settings.performance.stack_size, 256 * 1024))
    tracing.start(settings)  # before the app is built: it adds its middleware when on
    host = settings.server.bind_address
    sockets = [listen(host, settings.server.http_port, "server.http_port")]
    if settings.monitoring.enable_metrics:
        sockets.append(listen(host, settings.server.metrics_port, "server.metrics_port"))
    state = ServerState(settings)
    api = _Server(
        api_config(
            build_app(state),
            settings,
            port=settings.server.http_port,
            lifespan="on",
            limit_concurrency=settings.server.max_connections,
            **uvicorn_options(settings),
        )
    )
    metrics = None
    if settings.monitoring.enable_metrics:
        metrics_app = state.metrics.app(settings.monitoring.prometheus.endpoint)
        metrics = _Server(
            uvicorn.Config(
                metrics_app,
                port=settings.server.metrics_port,
                lifespan="off",
                **uvicorn_options(settings),
            )
        )
    exit_code = 0

    async def main() -> None:
        nonlocal exit_code
        loop = asyncio.get_running_loop()

        def stop(code: int = 0, delay: float = 0.0) -> None:
            nonlocal exit_code
            exit_code = exit_code or code
            if state.phase in ("starting", "ready"):
                state.phase = "draining"
                log.info("shutting down: not ready, still serving; closing in %.1fs", delay)
            loop.call_later(delay, setattr, api, "should_exit", True)

        loop.add_signal_handler(signal.SIGTERM, stop, 0, settings.server.drain_delay)
        loop.add_signal_handler(signal.SIGINT, stop, 0, 0.0)

        def request_exit(code: int) -> None:
            loop.call_soon_threadsafe(stop, code, 0.0)

        state.request_exit = request_exit
        metrics_task = asyncio.create_task(metrics.serve(sockets[1:])) if metrics else None
        try:
            await api.serve(sockets[:1])
        finally:
            if metrics is not None and metrics_task is not None:
                metrics.should_exit = True
                await metrics_task
        if not api.started:
            exit_code = exit_code or 1

    try:
        uvloop.run(main())
    finally:
        tracing.stop()  # the spans of the last requests, exported in a bounded time
    log.info("stopped", extra={"event": "exit", "status": exit_code})
    return exit_code
