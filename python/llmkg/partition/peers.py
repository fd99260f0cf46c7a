"""The caller's side: the peers that host partitions, and calls to them that survive a
replica's failure.

``PeerPool`` holds one gRPC channel (``grpc.aio``, on the router's event loop: a fan-out
is eight calls waited on, not eight threads) and one circuit breaker per peer
(``registry``). The peer list is given (``update``: the static list; ``update_addresses``:
discovery at run time); a peer's hosted partitions and their readiness can also be
learned from its ``Health`` (``refresh``, ``keep_refreshed``).

A call to a partition (``search``, ``candidates``, ``get``):

- has a deadline: the smaller of the caller's ``timeout`` and
  ``communication_timeout``; every attempt carries what is left of it to the peer, which
  gRPC enforces on both ends;
- goes to one replica, chosen by (``_rank``): known ready before known not ready, then
  this pod's zone first, then a closed breaker before a half-open one (an open breaker
  lets no call through), then the fewest calls in flight (least connections; ties at
  random);
- is retried, at most ``max_retries`` times, only on UNAVAILABLE, DEADLINE_EXCEEDED and
  RESOURCE_EXHAUSTED, on the next replica (one not yet tried, while there is one), after
  the ``retry_backoff`` wait; never past the deadline: a retry whose wait would end after
  it is not made;
- fails with ``PartitionCallError``: the last attempt's status (UNAVAILABLE when no
  replica could be tried).

``fan_out`` calls every partition at once and reports each one's answer or error, so that
a router merges complete answers and refuses partial ones (``FanOut.complete``).
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
import grpc.aio

from llmkg.engine.results import Neighbor, Node, SearchHit
from llmkg.partition import codec
from llmkg.partition.breaker import BreakerState, Permit
from llmkg.partition.registry import BreakerSettings, Peer, PeerRegistry, PeerSpec
from llmkg.partition.retry import PEER_FAILURES, RETRYABLE, Backoff
from llmkg.partition.server import FIELD_METADATA
from llmkg.partition.tls import channel_credentials
from llmkg.partition.types import HealthInfo, PartitionCallError
from llmkg.partition.v1 import partition_pb2 as pb
from llmkg.tracing_grpc import aio_client_interceptors

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from llmkg.config import Settings
    from llmkg.partition.metrics import PartitionMetrics

T = TypeVar("T")


@dataclass
class FanOut(Generic[T]):
    """The answer of each partition that answered, and the error of each that did not."""

    results: dict[int, T]
    errors: dict[int, PartitionCallError]

    @property
    def complete(self) -> bool:
        return not self.errors


class PeerPool(PeerRegistry):
    def __init__(
        self,
        *,
        zone: str = "",
        partition_count: int = 1,
        timeout: float = 5.0,
        max_retries: int = 3,
        backoff: Backoff | None = None,
        breaker: BreakerSettings | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metrics: PartitionMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        peers: Iterable[PeerSpec] = (),
    ) -> None:
        super().__init__(
            breaker=breaker, credentials=credentials, clock=clock, interceptors=interceptors
        )
        self.zone = zone
        self.partition_count = partition_count
        self.timeout = timeout  # deadlines use time.monotonic, not the breakers' clock
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.metrics = metrics
        self.random = random
        self.sleep = sleep
        if metrics is not None:
            metrics.watch(self.breaker_states)
        self.update(peers)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        zone: str | None = None,
        registry: CollectorRegistry | None = None,
        peers: Iterable[PeerSpec] = (),
    ) -> PeerPool:
        """The pool as ``[scalability.distribution]`` and ``[security]`` say, in this
        server's zone (``distribution.zone`` unless given); its metrics in ``registry``."""
        from llmkg.partition.metrics import PartitionMetrics

        d = settings.scalability.distribution
        security = settings.security
        return cls(
            zone=d.zone if zone is None else zone,
            partition_count=d.partition_count,
            timeout=d.communication_timeout,
            max_retries=d.max_retries,
            backoff=Backoff(d.retry_backoff),
            breaker=BreakerSettings(
                threshold=d.circuit_breaker_threshold, open_for=d.circuit_breaker_timeout
            ),
            credentials=channel_credentials(security) if security.enable_tls else None,
            metrics=None
            if registry is None
            else PartitionMetrics.from_settings(settings, registry),
            # The trace goes with each call (none while tracing is off: make the pool
            # after llmkg.tracing.start).
            interceptors=aio_client_interceptors(),
            peers=peers,
        )

    # ---- calls -------------------------------------------------------------------------

    def _rank(self, partition: int, peer: Peer) -> tuple[bool, bool, bool, int, float]:
        return (
            peer.known_not_ready(partition),
            peer.zone != self.zone,
            peer.breaker.state is not BreakerState.CLOSED,
            peer.in_flight,
            self.random(),
        )

    def _choose(self, partition: int, tried: set[str]) -> tuple[Peer, Permit] | None:
        replicas = self.replicas(partition)
        untried = [p for p in replicas if p.address not in tried] or replicas
        for peer in sorted(untried, key=lambda p: self._rank(partition, p)):
            permit = peer.breaker.allow()
            if permit is not None:
                return peer, permit
        return None

    async def _attempt(
        self, peer: Peer, permit: Permit | None, method: str, request: Any, timeout: float
    ) -> Any:
        """One call to one peer, counted in its breaker (under ``permit``) and metrics."""
        call = getattr(self._stub(peer), method)
        peer.in_flight += 1
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await call(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            peer.in_flight -= 1
            if permit is not None:
                if code is grpc.StatusCode.CANCELLED:
                    peer.breaker.release(permit)
                else:
                    peer.breaker.record(permit, code in PEER_FAILURES)
            if self.metrics is not None:
                elapsed = time.perf_counter() - started
                self.metrics.observe(peer.address, method, code.name, elapsed)

    def _deadline(self, timeout: float | None) -> float:
        budget = self.timeout if timeout is None else min(timeout, self.timeout)
        return time.monotonic() + budget

    async def call(
        self, partition: int, method: str, request: Any, timeout: float | None = None
    ) -> Any:
        """``method`` (``"Search"``, ``"Candidates"``, ``"Get"``) of one replica of
        ``partition``, with the retries and the deadline described above."""
        deadline = self._deadline(timeout)
        tried: set[str] = set()
        error: PartitionCallError | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                wait = self.backoff.delay(attempt, self.random)
                if time.monotonic() + wait >= deadline:
                    break
                await self.sleep(wait)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            chosen = self._choose(partition, tried)
            if chosen is None:
                if error is None:
                    error = self._no_replica(partition, attempt)
                break
            peer, permit = chosen
            tried.add(peer.address)
            try:
                return await self._attempt(peer, permit, method, request, remaining)
            except grpc.aio.AioRpcError as e:
                error = _call_error(e, partition, peer.address, attempt + 1)
                if e.code() not in RETRYABLE:
                    raise error from None
        if error is None:
            error = PartitionCallError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "the deadline passed before a call could be made",
                partition=partition,
            )
        raise error

    def _no_replica(self, partition: int, attempts: int) -> PartitionCallError:
        replicas = self.replicas(partition)
        why = "its circuit breakers are open" if replicas else "no known peer hosts it"
        return PartitionCallError(
            grpc.StatusCode.UNAVAILABLE,
            f"no replica of partition {partition} can be called: {why}",
            partition=partition,
            attempts=attempts,
        )

    async def search(
        self,
        partition: int,
        vector: Any,
        k: int,
        ef: int | None = None,
        filter: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[SearchHit]:
        request = pb.SearchRequest(
            partition=partition,
            vector=codec.pack_vector(vector),
            k=k,
            ef=ef,
            filter=codec.filter_message(filter),
        )
        return codec.hits_of(await self.call(partition, "Search", request, timeout))

    async def candidates(
        self, partition: int, vector: Any, k: int, *, timeout: float | None = None
    ) -> list[Neighbor]:
        request = pb.CandidatesRequest(partition=partition, vector=codec.pack_vector(vector), k=k)
        return codec.candidates_of(await self.call(partition, "Candidates", request, timeout))

    async def get(
        self, partition: int, node_id: int, *, timeout: float | None = None
    ) -> Node | None:
        response = await self.call(
            partition, "Get", pb.GetRequest(partition=partition, node_id=node_id), timeout
        )
        return codec.node_of(response.node) if response.HasField("node") else None

    async def nudge(
        self, partition: int, seq: int, *, timeout: float | None = None
    ) -> dict[str, PartitionCallError | None]:
        """Tell every replica of ``partition`` that the database holds its rows up to
        ``seq``; each replica's outcome by address. Not retried: a replica that misses a
        nudge applies the rows at its next poll. Replicas whose breaker is open are
        skipped (reported as UNAVAILABLE)."""
        request = pb.NudgeRequest(partition=partition, seq=seq)
        deadline = self._deadline(timeout)

        async def one(peer: Peer) -> PartitionCallError | None:
            permit = peer.breaker.allow()
            if permit is None:
                return PartitionCallError(
                    grpc.StatusCode.UNAVAILABLE,
                    "circuit breaker open",
                    partition=partition,
                    peer=peer.address,
                )
            try:
                await self._attempt(peer, permit, "Nudge", request, deadline - time.monotonic())
            except grpc.aio.AioRpcError as e:
                return _call_error(e, partition, peer.address, 1)
            return None

        replicas = self.replicas(partition)
        outcomes = await asyncio.gather(*(one(p) for p in replicas))
        return {p.address: o for p, o in zip(replicas, outcomes, strict=True)}

    async def health(self, address: str, *, timeout: float | None = None) -> HealthInfo:
        """One peer's ``Health``; made whatever its breaker says (it is how the pool learns
        of the peer). It counts in the breaker only as the trial of a half-open one: a
        peer that has recovered is closed again by ``keep_refreshed`` without a request
        risked on it, even while other replicas take all the traffic."""
        peer = self._peers.get(address)
        if peer is None:
            raise KeyError(f"unknown peer {address}")
        trial = None
        if peer.breaker.state is BreakerState.HALF_OPEN:
            trial = peer.breaker.allow()
        remaining = self._deadline(timeout) - time.monotonic()
        try:
            response = await self._attempt(peer, trial, "Health", pb.HealthRequest(), remaining)
        except grpc.aio.AioRpcError as e:
            raise _call_error(e, None, address, 1) from None
        return codec.health_of(response)

    async def refresh(
        self, *, timeout: float | None = None
    ) -> dict[str, HealthInfo | PartitionCallError]:
        """Ask every peer's ``Health``: what answers replaces what its spec said it hosts
        (and its zone, if the spec gave none), with each partition's readiness."""
        peers = self.peers

        async def one(peer: Peer) -> HealthInfo | PartitionCallError:
            try:
                info = await self.health(peer.address, timeout=timeout)
            except PartitionCallError as e:
                return e
            peer.learned = {s.partition: s.ready for s in info.partitions}
            peer.zone = peer.spec.zone or info.zone
            return info

        outcomes = await asyncio.gather(*(one(p) for p in peers))
        return {p.address: o for p, o in zip(peers, outcomes, strict=True)}

    async def keep_refreshed(self, interval: float) -> None:
        """``refresh`` every ``interval`` seconds, until cancelled: new peers are learned,
        and a partition that falls behind (or catches up) is seen within ``interval``."""
        while True:
            await self.refresh(timeout=interval)
            await asyncio.sleep(interval)

    # ---- fan-out -----------------------------------------------------------------------

    async def fan_out(
        self,
        call: Callable[[int, float], Awaitable[T]],
        partitions: Iterable[int] | None = None,
        *,
        timeout: float | None = None,
    ) -> FanOut[T]:
        """``call(partition, timeout)`` for every partition (all ``partition_count`` of
        them by default) at once; their answers and errors, by partition, once all have
        ended or the deadline has passed (a call still running then is cancelled and
        reported as DEADLINE_EXCEEDED). An error other than ``PartitionCallError`` (a
        bug) cancels the rest and is raised."""
        chosen = list(range(self.partition_count) if partitions is None else partitions)
        if not chosen:
            return FanOut({}, {})
        deadline = self._deadline(timeout)
        remaining = deadline - time.monotonic()
        tasks = {p: asyncio.ensure_future(call(p, remaining)) for p in chosen}
        try:
            _, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, remaining))
        finally:
            # Past the deadline, or the caller cancelled (its client went away): the calls
            # still running are cancelled, not left to run out their deadlines.
            for task in tasks.values():
                task.cancel()
        if pending:
            await asyncio.wait(pending)
        results: dict[int, T] = {}
        errors: dict[int, PartitionCallError] = {}
        for partition, task in tasks.items():
            if task in pending:
                errors[partition] = PartitionCallError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "no answer by the deadline",
                    partition=partition,
                )
                continue
            error = task.exception()
            if isinstance(error, PartitionCallError):
                errors[partition] = error
            elif error is not None:
                raise error
            else:
                results[partition] = task.result()
        return FanOut(results, errors)

    async def fan_out_search(
        self,
        vector: Any,
        k: int,
        ef: int | None = None,
        filter: Mapping[str, Any] | None = None,
        *,
        partitions: Iterable[int] | None = None,
        timeout: float | None = None,
    ) -> FanOut[list[SearchHit]]:
        """``search`` of every partition (merging is the router's: by score)."""
        packed = codec.pack_vector(vector)  # once, and a bad vector raises here

        async def one(partition: int, remaining: float) -> list[SearchHit]:
            request = pb.SearchRequest(
                partition=partition,
                vector=packed,
                k=k,
                ef=ef,
                filter=codec.filter_message(filter),
            )
            return codec.hits_of(await self.call(partition, "Search", request, remaining))

        return await self.fan_out(one, partitions, timeout=timeout)

    async def fan_out_candidates(
        self,
        vector: Any,
        k: int,
        *,
        partitions: Iterable[int] | None = None,
        timeout: float | None = None,
    ) -> FanOut[list[Neighbor]]:
        """``candidates`` of every partition: where a new fact could go."""
        packed = codec.pack_vector(vector)

        async def one(partition: int, remaining: float) -> list[Neighbor]:
            request = pb.CandidatesRequest(partition=partition, vector=packed, k=k)
            return codec.candidates_of(await self.call(partition, "Candidates", request, remaining))

        return await self.fan_out(one, partitions, timeout=timeout)


def _field_of(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == FIELD_METADATA:
            return str(value)
    return None


def _call_error(
    e: grpc.aio.AioRpcError, partition: int | None, peer: str, attempts: int
) -> PartitionCallError:
    return PartitionCallError(
        e.code(),
        e.details() or "",
        partition=partition,
        peer=peer,
        field=_field_of(e.trailing_metadata()),  # type: ignore[arg-type]
        attempts=attempts,
    )
