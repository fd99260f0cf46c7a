"""The peers a pod calls: one ``Peer`` per address, with its gRPC channel (``grpc.aio``,
made on first use in the event loop), its circuit breaker, its calls in flight, and what
it hosts (from the peer list, or learned from its ``Health``).

The list is replaced whole (``update``, ``update_addresses``): a kept peer keeps its
state; a removed one's channel closes once its calls are done. The registry belongs to
one event loop: called from another thread (discovery's refresh thread), an update is
handed to that loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import grpc.aio

from llmkg.partition.breaker import BreakerState, CircuitBreaker
from llmkg.partition.v1 import partition_pb2_grpc as pb_grpc

T = TypeVar("T")

# A search's answer can be large (k = 1000 facts of 4096-character fields): above gRPC's
# default 4 MB limit on what a channel receives.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    # A restarted peer is connected to again within a few seconds (gRPC's default backoff
    # grows to two minutes, past a breaker's timeout).
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
)
CLOSE_GRACE = 5.0  # seconds a removed peer's calls in flight get to finish


@dataclass(frozen=True)
class PeerSpec:
    """A pod to call: its ``host:port``, its zone ("" if unknown) and the partitions it
    hosts (empty: learned from its ``Health``)."""

    address: str
    zone: str = ""
    partitions: frozenset[int] = frozenset()


@dataclass
class Peer:
    spec: PeerSpec
    breaker: CircuitBreaker
    in_flight: int = 0
    zone: str = ""
    # From its last Health answer: partition -> ready (None before one).
    learned: dict[int, bool] | None = None
    channel: grpc.aio.Channel | None = None
    stub: pb_grpc.PartitionStub | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return self.spec.address

    def hosts(self, partition: int) -> bool:
        if self.learned is not None:
            return partition in self.learned
        return partition in self.spec.partitions

    def known_not_ready(self, partition: int) -> bool:
        return self.learned is not None and not self.learned.get(partition, False)


@dataclass(frozen=True)
class BreakerSettings:
    threshold: float = 50.0  # percent of the window's calls that failed
    open_for: float = 30.0
    window: float = 10.0
    minimum_calls: int = 10


class PeerRegistry:
    def __init__(
        self,
        *,
        breaker: BreakerSettings | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        clock: Callable[[], float] = time.monotonic,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        self.breaker_settings = breaker or BreakerSettings()
        self.credentials = credentials
        self.interceptors = list(interceptors)
        self.clock = clock  # the breakers' clock
        self._peers: dict[str, Peer] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # ---- the peer list -----------------------------------------------------------------

    def update(self, peers: Iterable[PeerSpec]) -> None:
        """Make ``peers`` the peer list. A peer kept keeps its channel, breaker and what it
        learned (unless its hosted partitions changed); a removed peer's channel closes
        once its calls in flight are done (at most ``CLOSE_GRACE`` seconds). From a
        thread other than the event loop's, the change is made on the loop, soon after."""
        self._on_loop(self._update, list(peers))

    def update_addresses(self, addresses: Iterable[str]) -> None:
        """The peer list by address alone, as discovery finds it (its ``on_change``): a
        known peer keeps its spec, a new one hosts nothing until ``refresh`` has asked it
        what it hosts."""
        wanted = list(addresses)

        def apply(known: dict[str, Peer]) -> None:
            self._update([known[a].spec if a in known else PeerSpec(a) for a in wanted])

        self._on_loop(apply, self._peers)

    def _on_loop(self, change: Callable[[T], None], argument: T) -> None:
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(change, argument)
        else:
            change(argument)

    def _update(self, peers: list[PeerSpec]) -> None:
        wanted = {spec.address: spec for spec in peers}
        for address in list(self._peers):
            if address not in wanted:
                self._close(self._peers.pop(address))
        for address, spec in wanted.items():
            peer = self._peers.get(address)
            if peer is None:
                s = self.breaker_settings
                self._peers[address] = Peer(
                    spec,
                    CircuitBreaker(
                        s.threshold,
                        s.open_for,
                        window=s.window,
                        minimum_calls=s.minimum_calls,
                        clock=self.clock,
                        name=address,
                    ),
                    zone=spec.zone,
                )
            elif peer.spec != spec:
                if peer.spec.partitions != spec.partitions:
                    peer.learned = None
                peer.spec, peer.zone = spec, spec.zone or peer.zone

    @property
    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    def replicas(self, partition: int) -> list[Peer]:
        return [p for p in self._peers.values() if p.hosts(partition)]

    def breaker_states(self) -> list[tuple[str, BreakerState]]:
        return [(p.address, p.breaker.state) for p in list(self._peers.values())]

    def _close(self, peer: Peer) -> None:
        if peer.channel is not None:
            channel, peer.channel, peer.stub = peer.channel, None, None
            closing = asyncio.ensure_future(channel.close(CLOSE_GRACE))
            # The loop keeps only a weak reference to a task: hold it until it is done.
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every channel (calls in flight are cancelled)."""
        peers, self._peers = list(self._peers.values()), {}
        await asyncio.gather(*(p.channel.close() for p in peers if p.channel is not None))

    def _stub(self, peer: Peer) -> pb_grpc.PartitionStub:
        # Made on first use, inside the running event loop (a grpc.aio channel is bound to
        # the loop it is made in), which the registry then belongs to.
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        if peer.stub is None:
            if self.credentials is None:
                peer.channel = grpc.aio.insecure_channel(
                    peer.address, CHANNEL_OPTIONS, interceptors=self.interceptors
                )
            else:
                peer.channel = grpc.aio.secure_channel(
                    peer.address,
                    self.credentials,
                    CHANNEL_OPTIONS,
                    interceptors=self.interceptors,
                )
            # protoc's gRPC module has no annotations.
            peer.stub = pb_grpc.PartitionStub(peer.channel)  # type: ignore[no-untyped-call]
        return peer.stub
