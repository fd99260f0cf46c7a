"""``llmkg.Client``: the HTTP API from Python, with the engine's method names and result
types, retries of safe calls on 429/503, and the refresh of an expired access token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import overload

import httpx

from llmkg.client import calls
from llmkg.client.base import (
    DEFAULT_TIMEOUT,
    Cert,
    ClientBase,
    Verify,
    read_answer,
    tls,
    translated,
)
from llmkg.client.calls import Call, Page
from llmkg.client.errors import ApiError, error_from_answer
from llmkg.client.retry import Attempts, RetryPolicy
from llmkg.client.types import (
    AccessToken,
    Backup,
    Entity,
    FactInput,
    Health,
    SearchExpand,
    SearchFilter,
    Vector,
)
from llmkg.engine.exchange import ExportedFact
from llmkg.engine.facts import Fact
from llmkg.engine.results import AllocationResult, ExpandedSearch, Node, SearchHit, Traversal
from llmkg.engine.traversal import DEFAULT_FACTS


class Client(ClientBase):
    """A client of one llmkg server; thread-safe, one connection pool.

    ``token``: the access token (JWT) sent as ``Authorization: Bearer``; with
    ``refresh_token``, a 401 ``token_expired`` refreshes it once and sends the call again.
    ``timeout``: seconds for a whole call, its retries and their waits included.
    ``retry``: when 429/503 answers to safe calls are retried (``RetryPolicy``).
    ``verify``: a CA file, True (public CAs) or False; ``cert``: a client certificate.
    ``clock`` and ``sleep``: a monotonic clock and its sleep (tests pass their own)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        refresh_token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        verify: Verify = True,
        cert: Cert | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(url, token, refresh_token, timeout, retry, clock)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.url,
            verify=tls(verify, cert),
            headers=self._default_headers(headers),
            timeout=timeout,
        )

    # ---- the engine's calls ----------------------------------------------------------------

    def allocate(self, fact: FactInput | Fact) -> AllocationResult:
        """Place one fact; the same triple again keeps its node (``created=False``)."""
        return self._send(calls.allocate(fact))

    def allocate_many(self, facts: Iterable[FactInput | Fact]) -> list[AllocationResult]:
        """Allocate each fact in order (``POST /api/v1/allocate/batch``)."""
        return self._send(calls.allocate_many(facts))

    @overload
    def search(
        self,
        embedding: Vector | None = None,
        text: str | None = None,
        k: int = 10,
        ef: int | None = None,
        filter: SearchFilter | None = None,
        expand: None = None,
    ) -> list[SearchHit]: ...

    @overload
    def search(
        self,
        embedding: Vector | None = None,
        text: str | None = None,
        k: int = 10,
        ef: int | None = None,
        filter: SearchFilter | None = None,
        *,
        expand: SearchExpand,
    ) -> ExpandedSearch: ...

    def search(
        self,
        embedding: Vector | None = None,
        text: str | None = None,
        k: int = 10,
        ef: int | None = None,
        filter: SearchFilter | None = None,
        expand: SearchExpand | None = None,
    ) -> list[SearchHit] | ExpandedSearch:
        """The ``k`` nodes closest to ``embedding`` or to ``text``, best first. With
        ``expand`` (``{"hops", "max_facts", "predicates"}``, each optional): an
        ``ExpandedSearch``, the hits and the facts connected to them."""
        if expand is None:
            return self._send(calls.search(embedding, text, k, ef, filter))
        return self._send(calls.search_expanded(embedding, text, k, ef, filter, expand))

    def get(self, node_id: int) -> Node | None:
        """The live node ``node_id``, or None."""
        return self._send(calls.get(node_id))

    def delete(self, node_id: int) -> bool:
        """Delete a node (its children take its parent); False if there was none."""
        return self._send(calls.delete(node_id))

    def facts_matching(
        self,
        subject: str | None = None,
        predicate: str | None = None,
        object: str | None = None,
        min_confidence: float | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> Page[Node]:
        """A page of the live facts matching the pattern, by node id, and the cursor to
        pass as ``after`` for the next page (None at the end)."""
        return self._send(
            calls.facts_matching(subject, predicate, object, min_confidence, limit, after)
        )

    def iter_facts(
        self,
        subject: str | None = None,
        predicate: str | None = None,
        object: str | None = None,
        min_confidence: float | None = None,
        *,
        page_size: int | None = None,
    ) -> Iterator[Node]:
        """Every live fact matching the pattern, a page at a time."""
        return self._walk(
            lambda after: calls.facts_matching(
                subject, predicate, object, min_confidence, page_size, after
            )
        )

    def entity(
        self,
        name: str,
        limit: int | None = None,
        subject_after: str | None = None,
        object_after: str | None = None,
    ) -> Entity | None:
        """The facts that mention ``name``, a page per role, or None when none does.
        (All of one role: ``iter_facts(subject=name)`` or ``iter_facts(object=name)``.)"""
        return self._send(calls.entity(name, limit, subject_after, object_after))

    def entities(
        self, prefix: str = "", limit: int | None = None, after: str | None = None
    ) -> Page[str]:
        """A page of the subjects and objects starting with ``prefix``, in code point
        order, and the cursor of the next page."""
        return self._send(calls.entities(prefix, limit, after))

    def iter_entities(self, prefix: str = "", *, page_size: int | None = None) -> Iterator[str]:
        return self._walk(lambda after: calls.entities(prefix, page_size, after))

    def children(
        self, node_id: int, limit: int | None = None, after: str | None = None
    ) -> Page[Node] | None:
        """A page of the node's children and the next cursor; None if it is not live."""
        return self._send(calls.children(node_id, limit, after))

    def iter_children(self, node_id: int, *, page_size: int | None = None) -> Iterator[Node]:
        """Every child of ``node_id``; ``NotFoundError`` if it is not live."""
        return self._walk(lambda after: calls.children_pages(node_id, page_size, after))

    def ancestors(self, node_id: int, max_depth: int | None = None) -> list[Node] | None:
        """The node's parent, its parent and so on, nearest first; None if not live."""
        return self._send(calls.ancestors(node_id, max_depth))

    def traverse(
        self,
        entities: Sequence[str] | None = None,
        nodes: Sequence[int] | None = None,
        hops: int = 1,
        direction: str = "out",
        predicates: Sequence[str] | None = None,
        max_facts: int = DEFAULT_FACTS,
    ) -> Traversal:
        """The live facts within ``hops`` (1 to 3) of ``entities`` or of ``nodes`` (one of
        the two), breadth first in the ``direction`` (``"out"``, ``"in"``, ``"both"``),
        following only ``predicates`` if given; by hop, then node id, at most
        ``max_facts`` (1 to 1000). As ``AllocationEngine.traverse``."""
        return self._send(calls.traverse(entities, nodes, hops, direction, predicates, max_facts))

    def export(self, embedding: bool = False) -> Iterator[ExportedFact]:
        """Every live fact, by node id, as the server streams it (``GET /api/v1/export``),
        read a line at a time; ``embedding=True`` adds each stored vector. Retried (429,
        503, an expired token) only before the first fact; a connection lost after it
        raises ``ApiConnectionError``. Exhaust it or close it: it holds a connection."""
        return self._stream(calls.export(embedding))

    # ---- probes, tokens, administration ----------------------------------------------------

    def live(self) -> Health:
        return self._send(calls.live())

    def ready(self) -> Health:
        """The readiness probe; not ready is an answer (``health.ok`` False), not an error."""
        return self._send(calls.ready())

    def refresh(self) -> AccessToken:
        """A new access token for the refresh token, sent from now on."""
        with self._lock:
            return self._refresh_locked()

    def stats(self) -> dict[str, object]:
        """The engine's statistics (scope ``admin``)."""
        return self._send(calls.stats())

    def checkpoint(self) -> int:
        """Write an index snapshot now (scope ``admin``); its store sequence."""
        return self._send(calls.checkpoint())

    def backup(self) -> Backup:
        """Write a backup on the server (scope ``admin``)."""
        return self._send(calls.backup())

    # ---- the connection --------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- sending ---------------------------------------------------------------------------

    def _refresh_locked(self) -> AccessToken:
        answer = self._send(calls.refresh(self._refreshing()))
        self._token = answer.access_token
        return answer

    def _refresh_after(self, used: str | None) -> None:
        with self._lock:
            if self._token == used:  # else another thread has refreshed it meanwhile
                self._refresh_locked()

    def _recover(self, attempts: Attempts, error: ApiError, used: str | None) -> None:
        """Refresh the token or wait before the next attempt; raises ``error`` if none."""
        step = self._step(attempts, error)
        if step == "refresh":
            self._refresh_after(used)
        else:
            self._sleep(step)

    def _send(self, call: Call[calls.T]) -> calls.T:
        attempts = self._attempts(call)
        while True:
            token = self._token
            with translated(self.url):
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=self._headers(call, token),
                    timeout=attempts.remaining(),
                )
            try:
                return read_answer(call, response.status_code, response.content, response.headers)
            except ApiError as error:
                self._recover(attempts, error, token)

    def _stream(self, call: Call[calls.T]) -> Iterator[calls.T]:
        """``call``'s answer read as lines (NDJSON), each decoded on its own. Retries and
        refreshes happen before the first line only."""
        attempts = self._attempts(call)
        while True:
            token = self._token
            with (
                translated(self.url),
                self._http.stream(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=self._headers(call, token),
                    timeout=attempts.remaining(),
                ) as response,
            ):
                status, headers = response.status_code, response.headers
                if status in call.answers:
                    for line in response.iter_lines():
                        if line.strip():
                            yield read_answer(call, status, line.encode(), headers)
                    return
                body = response.read()
            error = error_from_answer(status, body, headers)
            self._recover(attempts, error, token)

    def _walk(self, page: Callable[[str | None], Call[Page[calls.T]]]) -> Iterator[calls.T]:
        after: str | None = None
        while True:
            items, after = self._send(page(after))
            yield from items
            if after is None:
                return
