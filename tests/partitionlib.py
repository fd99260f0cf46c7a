"""Partition servers for the tests of llmkg.partition: real gRPC servers on free loopback
ports, serving handlers that the test scripts (answers tagged with the server's name,
errors to raise, calls that block until released), and a fake clock for the breakers."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
import numpy as np

from llmkg.config.schema import SecuritySettings
from llmkg.engine.results import Neighbor, Node, SearchHit
from llmkg.partition import HealthInfo, Limits, PartitionServer, PartitionStatus, PeerSpec
from llmkg.partition.v1 import partition_pb2 as pb

DIM = 4
LIMITS = Limits(dimension=DIM)


def vector(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedHandlers:
    """Handlers whose answers name the server (``name``): a search hit's subject, a
    candidate's node id (``1000 * server number + partition``), a node's object. Each call
    is counted by method (``calls``); ``errors[method]`` lists exceptions to raise first,
    one per call; while ``gate`` is set for a method, its calls wait for ``release()``
    (``entered`` says a call is waiting)."""

    def __init__(self, name: str, partitions: Sequence[int], zone: str = "") -> None:
        self.name = name
        self.number = int("".join(c for c in name if c.isdigit()) or 0)
        self.partitions = set(partitions)
        self.zone = zone
        self.not_ready: set[int] = set()
        self.calls: Counter[str] = Counter()
        self.errors: dict[str, list[Exception]] = {}
        self.gated: set[str] = set()
        self.entered = threading.Event()
        self.finished = threading.Event()
        self._gate = threading.Event()
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def release(self) -> None:
        self._gate.set()

    def _enter(self, method: str, **args: Any) -> None:
        with self._lock:
            self.calls[method] += 1
            self.seen.append({"method": method, **args})
            pending = self.errors.get(method)
            error = pending.pop(0) if pending else None
        if error is not None:
            raise error
        if method in self.gated:
            self.entered.set()
            self._gate.wait(30)
            self.finished.set()

    def hosts(self, partition: int) -> bool:
        return partition in self.partitions

    def search(
        self,
        partition: int,
        vector: np.ndarray,
        k: int,
        ef: int | None,
        filter: Mapping[str, Any] | None,
    ) -> list[SearchHit]:
        self._enter("search", partition=partition, vector=vector.copy(), k=k, ef=ef, filter=filter)
        score = float(vector.sum())
        return [
            SearchHit(
                partition * 100 + i,
                score - i,
                Node(partition * 100 + i, self.name, "p", f"o{i}", 0.5, None if i == 0 else 0),
            )
            for i in range(k)
        ]

    def candidates(self, partition: int, vector: np.ndarray, k: int) -> list[Neighbor]:
        self._enter("candidates", partition=partition, k=k)
        return [Neighbor(1000 * self.number + partition, 0.9 - i / 10) for i in range(k)]

    def get(self, partition: int, node_id: int) -> Node | None:
        self._enter("get", partition=partition, node_id=node_id)
        if node_id < 0:
            return None
        return Node(node_id, "s", "p", self.name, 0.75, 7 if node_id % 2 else None)

    def nudge(self, partition: int, seq: int) -> None:
        self._enter("nudge", partition=partition, seq=seq)

    def health(self) -> HealthInfo:
        return HealthInfo(
            self.name,
            self.zone,
            [
                PartitionStatus(p, p not in self.not_ready, 40 + p, 2 if p in self.not_ready else 0)
                for p in sorted(self.partitions)
            ],
        )


@contextmanager
def serving(
    handlers: Any,
    *,
    security: SecuritySettings | None = None,
    workers: int = 4,
    limits: Limits = LIMITS,
) -> Iterator[PartitionServer]:
    """A started server on a free loopback port (``server.port``), stopped at the end."""
    server = PartitionServer(handlers, limits, "127.0.0.1:0", security=security, workers=workers)
    server.start()
    try:
        yield server
    finally:
        handlers_release = getattr(handlers, "release", None)
        if handlers_release is not None:
            handlers_release()  # no handler left waiting on a gate
        server.stop(None)


def address(server: PartitionServer | CodedServer) -> str:
    return f"127.0.0.1:{server.port}"


def spec(
    server: PartitionServer | CodedServer, zone: str = "", partitions: Iterable[int] = (0,)
) -> PeerSpec:
    return PeerSpec(address(server), zone, frozenset(partitions))


def run(coro_factory: Callable[[], Any]) -> Any:
    """Run an async test body in a fresh event loop."""
    return asyncio.run(coro_factory())


async def wait_for(event: threading.Event, timeout: float = 10.0) -> None:
    """Wait for a thread's event without blocking the loop (the handler runs on the
    server's threads)."""
    if not await asyncio.to_thread(event.wait, timeout):
        raise AssertionError("the event was not set in time")


class CodedServer:
    """A bare gRPC server of the partition service's ``Get`` that answers each call with
    the next status code of ``codes`` (then OK, with a node), to test how callers treat
    each code: what the real servicer never answers (DEADLINE_EXCEEDED, UNKNOWN...) too."""

    def __init__(self, codes: Sequence[grpc.StatusCode]) -> None:
        self.codes = list(codes)
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(2))

        def get(request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:
            self.calls += 1
            if self.codes:
                context.abort(self.codes.pop(0), "scripted")
            return pb.GetResponse(node=pb.Node(node_id=request.node_id, subject="coded"))

        handler = grpc.method_handlers_generic_handler(
            "llmkg.partition.v1.Partition",
            {
                "Get": grpc.unary_unary_rpc_method_handler(
                    get,
                    request_deserializer=pb.GetRequest.FromString,
                    response_serializer=pb.GetResponse.SerializeToString,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> CodedServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(None)
