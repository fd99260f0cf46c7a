"""An inline search that finds the index held by a writer moves to the worker pool: the
event loop never waits for the lock, and the search is still answered."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from starlette.requests import Request

from llmkg._core import IndexBusyError
from llmkg.config import Settings
from llmkg.server.api import Api
from llmkg.server.state import ServerState


class BusyIndexEngine:
    """An engine whose index is always held by a writer for callers that will not wait."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str]] = []
        self.follower = None  # an embedded store: searches may run inline

    def search(self, wait: bool = True, **args: Any) -> list[Any]:
        self.calls.append((wait, threading.current_thread().name))
        if not wait:
            raise IndexBusyError("the index is held by a writer")
        return []


def search_request(body: dict[str, Any]) -> Request:
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/search",
        "headers": [(b"content-type", b"application/json")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


def test_a_busy_index_sends_an_inline_search_to_a_worker() -> None:
    state = ServerState(Settings())
    engine = BusyIndexEngine()
    state.engine = engine  # type: ignore[assignment]
    state.phase = "ready"
    try:
        request = search_request({"query": {"embedding": [0.0] * 768, "k": 10}})
        response = asyncio.run(Api(state).search(request))
    finally:
        state.executor.shutdown(wait=True)
    assert response.status_code == 200
    loop_thread = threading.current_thread().name
    assert engine.calls[0] == (False, loop_thread), "the first try is on the loop, not waiting"
    waited, worker = engine.calls[1]
    assert waited and worker.startswith("llmkg-worker"), engine.calls
    assert state.metrics.searches_deferred._value.get() == 1  # type: ignore[attr-defined]
