"""The partition service over real gRPC on loopback: every method round-trips, a bad field
is INVALID_ARGUMENT naming it, an unhosted partition NOT_FOUND, handlers' errors become
the status codes callers retry or not, the standard health service follows readiness,
and a real engine's answers come through unchanged."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from partitionlib import DIM, ScriptedHandlers, address, run, serving, vector

from llmkg.engine import AllocationEngine, EngineConfig, FactError, NotCaughtUpError
from llmkg.engine.results import Neighbor, Node, SearchHit
from llmkg.partition import (
    HealthInfo,
    Limits,
    PartitionCallError,
    PartitionOverloadedError,
    PartitionServer,
    PartitionStatus,
    PartitionUnavailableError,
    PeerPool,
    PeerSpec,
    pack_vector,
)
from llmkg.partition.server import SERVICE, partition_service_name
from llmkg.partition.v1 import partition_pb2 as pb
from llmkg.partition.v1 import partition_pb2_grpc as pb_grpc
from llmkg.server.startup import StartupError


def pool_for(*servers: PartitionServer, partitions: frozenset[int] = frozenset({0, 1})) -> PeerPool:
    return PeerPool(
        partition_count=2, peers=[PeerSpec(address(s), partitions=partitions) for s in servers]
    )


def test_every_method_round_trips() -> None:
    handlers = ScriptedHandlers("pod-1", [0, 1], zone="zone-a")
    handlers.not_ready = {1}
    query = vector(3)

    async def body() -> None:
        with serving(handlers) as server:
            pool = pool_for(server)
            hits = await pool.search(
                1, query, 3, ef=50, filter={"subject": "s", "min_confidence": 0.25}
            )
            assert [h.node_id for h in hits] == [100, 101, 102]
            assert hits[0] == SearchHit(
                100, float(np.float32(query.sum())), Node(100, "pod-1", "p", "o0", 0.5, None)
            )
            assert hits[1].node.parent == 0
            (seen,) = handlers.seen
            assert seen["k"] == 3 and seen["ef"] == 50
            assert seen["filter"] == {"subject": "s", "min_confidence": 0.25}
            np.testing.assert_array_equal(seen["vector"], query)

            assert await pool.candidates(0, query, 2) == [
                Neighbor(1000, 0.9),
                Neighbor(1000, 0.8),
            ]
            assert await pool.get(0, 5) == Node(5, "s", "p", "pod-1", 0.75, 7)
            assert await pool.get(0, 4) == Node(4, "s", "p", "pod-1", 0.75, None)
            assert await pool.get(0, -1) is None
            assert await pool.nudge(1, 77) == {address(server): None}
            assert handlers.seen[-1] == {"method": "nudge", "partition": 1, "seq": 77}
            assert await pool.health(address(server)) == HealthInfo(
                "pod-1",
                "zone-a",
                [PartitionStatus(0, True, 40, 0), PartitionStatus(1, False, 41, 2)],
            )
            # Unset optional fields stay unset: no ef, no filter.
            await pool.search(0, query, 1)
            assert handlers.seen[-1]["ef"] is None and handlers.seen[-1]["filter"] is None
            await pool.close()

    run(body)


def raw_call(server: PartitionServer, method: str, request: object) -> grpc.RpcError:
    with grpc.insecure_channel(address(server)) as channel:
        stub = pb_grpc.PartitionStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            getattr(stub, method)(request, timeout=10)
    return caught.value


def field_of(error: grpc.RpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get("llmkg-field")  # type: ignore[attr-defined]


GOOD = pack_vector(np.ones(DIM))


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("Search", pb.SearchRequest(partition=0, vector=GOOD[:-1], k=1), "vector"),
        ("Search", pb.SearchRequest(partition=0, vector=GOOD + GOOD[:4], k=1), "vector"),
        ("Search", pb.SearchRequest(partition=0, vector=b"", k=1), "vector"),
        (
            "Search",
            pb.SearchRequest(partition=0, vector=pack_vector([1, np.nan, 0, 0]), k=1),
            "vector",
        ),
        ("Search", pb.SearchRequest(partition=0, vector=GOOD, k=0), "k"),
        ("Search", pb.SearchRequest(partition=0, vector=GOOD, k=1001), "k"),
        ("Search", pb.SearchRequest(partition=0, vector=GOOD, k=1, ef=0), "ef"),
        ("Search", pb.SearchRequest(partition=0, vector=GOOD, k=1, ef=10_001), "ef"),
        (
            "Search",
            pb.SearchRequest(partition=0, vector=GOOD, k=1, filter=pb.Filter(min_confidence=1.5)),
            "filter.min_confidence",
        ),
        (
            "Search",
            pb.SearchRequest(
                partition=0, vector=GOOD, k=1, filter=pb.Filter(min_confidence=float("nan"))
            ),
            "filter.min_confidence",
        ),
        (
            "Search",
            pb.SearchRequest(partition=0, vector=GOOD, k=1, filter=pb.Filter(object="x" * 4097)),
            "filter.object",
        ),
        ("Candidates", pb.CandidatesRequest(partition=0, vector=GOOD[:8], k=1), "vector"),
        ("Candidates", pb.CandidatesRequest(partition=0, vector=GOOD, k=0), "k"),
    ],
)
def test_bad_fields_are_invalid_argument_naming_the_field(
    method: str, request_: object, field: str
) -> None:
    handlers = ScriptedHandlers("pod-1", [0])
    with serving(handlers) as server:
        error = raw_call(server, method, request_)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert error.details().startswith(f"{field}: ")  # type: ignore[attr-defined]
    assert field_of(error) == field
    assert not handlers.calls, "the handler never saw the bad request"


def test_a_handlers_fact_error_names_its_field_to_the_caller() -> None:
    handlers = ScriptedHandlers("pod-1", [0])
    handlers.errors["get"] = [FactError("node_id", "not one of ours")]

    async def body() -> None:
        with serving(handlers) as server:
            pool = pool_for(server)
            with pytest.raises(PartitionCallError) as caught:
                await pool.get(0, 3)
            assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.field == "node_id"
            assert caught.value.message == "node_id: not one of ours"
            assert handlers.calls["get"] == 1, "a caller's mistake is not retried"
            await pool.close()

    run(body)


def test_a_partition_not_hosted_is_not_found() -> None:
    handlers = ScriptedHandlers("pod-1", [0])
    with serving(handlers) as server:
        for method, request in [
            ("Search", pb.SearchRequest(partition=3, vector=GOOD, k=1)),
            ("Candidates", pb.CandidatesRequest(partition=3, vector=GOOD, k=1)),
            ("Get", pb.GetRequest(partition=3, node_id=1)),
            ("Nudge", pb.NudgeRequest(partition=3, seq=1)),
        ]:
            error = raw_call(server, method, request)
            assert error.code() is grpc.StatusCode.NOT_FOUND, method  # type: ignore[attr-defined]
            assert "partition 3" in error.details()  # type: ignore[attr-defined]
    assert not handlers.calls


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (PartitionUnavailableError("not caught up"), grpc.StatusCode.UNAVAILABLE),
        (NotCaughtUpError("behind the database"), grpc.StatusCode.UNAVAILABLE),
        (PartitionOverloadedError("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (RuntimeError("a bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_handler_errors_become_status_codes(raised: Exception, code: grpc.StatusCode) -> None:
    handlers = ScriptedHandlers("pod-1", [0])
    handlers.errors["get"] = [raised]
    with serving(handlers) as server:
        error = raw_call(server, "Get", pb.GetRequest(partition=0, node_id=1))
    assert error.code() is code  # type: ignore[attr-defined]
    if code is grpc.StatusCode.INTERNAL:
        assert error.details() == "internal error", "no internals leak to the caller"  # type: ignore[attr-defined]


def health_status(server: PartitionServer, service: str) -> int:
    with grpc.insecure_channel(address(server)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        except grpc.RpcError as e:
            assert e.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
            return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def test_the_grpc_health_service_follows_readiness() -> None:
    serving_, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    handlers = ScriptedHandlers("pod-1", [0, 1])
    handlers.not_ready = {1}
    with serving(handlers) as server:
        assert health_status(server, "") == serving_
        assert health_status(server, SERVICE) == not_serving
        assert health_status(server, partition_service_name(0)) == serving_
        assert health_status(server, partition_service_name(1)) == not_serving
        handlers.not_ready = set()
        handlers.partitions = {1}
        server.refresh_health()
        assert health_status(server, SERVICE) == serving_
        assert health_status(server, partition_service_name(1)) == serving_
        assert health_status(server, partition_service_name(0)) == (
            health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        ), "a partition no longer hosted"


def test_a_port_in_use_is_a_startup_error_naming_the_key() -> None:
    with serving(ScriptedHandlers("pod-1", [0])) as server:
        with pytest.raises(StartupError, match=r"server.grpc_port .*cannot listen"):
            PartitionServer(ScriptedHandlers("pod-2", [0]), Limits(DIM), address(server))


class EngineHandlers:
    """The handlers over one embedded engine, as a pod would serve its partition."""

    def __init__(self, engine: AllocationEngine, partition: int) -> None:
        self.engine, self.partition = engine, partition

    def hosts(self, partition: int) -> bool:
        return partition == self.partition

    def search(self, partition, vector, k, ef, filter):  # type: ignore[no-untyped-def]
        return self.engine.search(vector, k=k, ef=ef, filter=filter)

    def candidates(self, partition, vector, k):  # type: ignore[no-untyped-def]
        return [Neighbor(h.node_id, h.score) for h in self.engine.search(vector, k=k)]

    def get(self, partition: int, node_id: int) -> Node | None:
        return self.engine.get(node_id)

    def nudge(self, partition: int, seq: int) -> None:
        pass

    def health(self) -> HealthInfo:
        return HealthInfo("pod-0", "", [PartitionStatus(self.partition, True, 0, 0)])


def test_an_engines_answers_come_through_unchanged(tmp_path: Path) -> None:
    config = EngineConfig(data_directory=tmp_path / "data", dim=8, checkpoint_interval=0)
    rng = np.random.default_rng(5)
    with AllocationEngine(config) as engine:
        for i in range(20):
            engine.allocate(
                {
                    "subject": f"s{i % 3}",
                    "predicate": "p",
                    "object": f"o{i}",
                    "confidence": 0.3 + i / 40,
                    "embedding": rng.normal(size=8).tolist(),
                }
            )
        query = rng.normal(size=8).astype(np.float32)
        flt = {"subject": "s1", "min_confidence": 0.4}
        expected = engine.search(query, k=5, filter=flt)
        node = engine.get(expected[0].node_id)

        async def body() -> None:
            handlers = EngineHandlers(engine, 2)
            with serving(handlers, limits=Limits(8)) as server:
                pool = PeerPool(
                    partition_count=3, peers=[PeerSpec(address(server), "", frozenset({2}))]
                )
                assert await pool.search(2, query, 5, filter=flt) == expected
                assert await pool.get(2, expected[0].node_id) == node
                await pool.close()

        run(body)
