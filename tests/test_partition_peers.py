"""PeerPool against real servers on loopback: deadlines, retries (which codes, how many,
never past the deadline), failover to the other replica, the choice of a replica (zone,
breaker, calls in flight, readiness), breakers opening and closing, and the metrics
(the fan-out and the peer list: test_partition_fanout.py)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from partitionlib import (
    CodedServer,
    FakeClock,
    ScriptedHandlers,
    address,
    run,
    serving,
    spec,
    vector,
    wait_for,
)
from prometheus_client import CollectorRegistry

from llmkg.partition import (
    RETRYABLE,
    Backoff,
    BreakerSettings,
    BreakerState,
    PartitionCallError,
    PartitionOverloadedError,
    PartitionServer,
    PartitionUnavailableError,
    PeerPool,
)
from llmkg.partition.metrics import PartitionMetrics


class Sleeps:
    """The pool's backoff waits, recorded (and waited for real: they are short)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds)


def first(_: object = None) -> float:
    """A `random` that never reorders ties: the peer list's order decides."""
    return 0.0


# ---- deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("communication_timeout", "caller_timeout"), [(60.0, 1.0), (1.0, 60.0), (1.0, None)]
)
def test_a_slow_peer_is_given_up_on_at_the_smaller_deadline(
    communication_timeout: float, caller_timeout: float | None
) -> None:
    handlers = ScriptedHandlers("pod-1", [0])
    handlers.gated = {"get"}

    async def body() -> None:
        with serving(handlers) as server:
            pool = PeerPool(timeout=communication_timeout, peers=[spec(server)])
            with pytest.raises(PartitionCallError) as caught:
                await pool.get(0, 1, timeout=caller_timeout)
            # The call is back while the handler still runs: bounded by the deadline,
            # not by the handler (the other deadline is a minute).
            assert not handlers.finished.is_set()
            assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
            assert handlers.entered.is_set(), "the call reached the peer"
            assert handlers.calls["get"] == 1, "no retry once the deadline has passed"
            handlers.release()
            await pool.close()

    run(body)


# ---- retries -----------------------------------------------------------------------------


# What may succeed on another replica or later (grpc/proposal A6): nothing else is retried.
EXPECTED_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.mark.parametrize("code", list(grpc.StatusCode)[1:], ids=lambda c: c.name)
def test_only_the_retryable_codes_are_retried(code: grpc.StatusCode) -> None:
    async def body() -> None:
        with CodedServer([code]) as server:
            pool = PeerPool(max_retries=3, backoff=Backoff(base=0.001), peers=[spec(server)])
            if code in EXPECTED_RETRYABLE:
                node = await pool.get(0, 9)
                assert node is not None and node.subject == "coded"
                assert server.calls == 2
            else:
                with pytest.raises(PartitionCallError) as caught:
                    await pool.get(0, 9)
                assert caught.value.code is code and caught.value.attempts == 1
                assert server.calls == 1
            await pool.close()

    run(body)


def test_retryable_codes_are_the_designs() -> None:
    assert RETRYABLE == EXPECTED_RETRYABLE


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retries_stop_at_max_retries_with_growing_waits(max_retries: int) -> None:
    sleeps = Sleeps()

    async def body() -> None:
        with CodedServer([grpc.StatusCode.UNAVAILABLE] * 10) as server:
            pool = PeerPool(
                max_retries=max_retries,
                backoff=Backoff("exponential", base=0.002, cap=1.0),
                random=lambda: 1.0,
                sleep=sleeps,
                peers=[spec(server)],
            )
            with pytest.raises(PartitionCallError) as caught:
                await pool.get(0, 9)
            assert caught.value.code is grpc.StatusCode.UNAVAILABLE
            assert caught.value.attempts == max_retries + 1 == server.calls
            await pool.close()

    run(body)
    assert sleeps.waits == [0.002, 0.004, 0.008][:max_retries]


def test_no_retry_waits_past_the_deadline() -> None:
    sleeps = Sleeps()

    async def body() -> None:
        with CodedServer([grpc.StatusCode.UNAVAILABLE] * 10) as server:
            pool = PeerPool(
                max_retries=3,
                backoff=Backoff("constant", base=30.0, cap=30.0),
                sleep=sleeps,
                peers=[spec(server)],
            )
            with pytest.raises(PartitionCallError) as caught:
                await pool.get(0, 9, timeout=20.0)
            assert caught.value.code is grpc.StatusCode.UNAVAILABLE
            assert server.calls == 1
            await pool.close()

    run(body)
    assert sleeps.waits == [], "a 15-30 s wait would end past the 20 s deadline"


def test_a_retry_goes_to_the_next_replica() -> None:
    near, far = ScriptedHandlers("pod-1", [0]), ScriptedHandlers("pod-2", [0])
    near.errors["get"] = [PartitionOverloadedError("busy")]

    async def body() -> None:
        with serving(near) as a, serving(far) as b:
            pool = PeerPool(zone="z1", random=first, peers=[spec(a, "z1"), spec(b, "z2")])
            node = await pool.get(0, 3)
            assert node is not None and node.object == "pod-2"
            assert (near.calls["get"], far.calls["get"]) == (1, 1)
            await pool.close()

    run(body)


def test_a_stopped_replica_fails_over_to_the_other() -> None:
    near, far = ScriptedHandlers("pod-1", [0]), ScriptedHandlers("pod-2", [0])
    registry = CollectorRegistry()

    async def body() -> None:
        with serving(near) as a, serving(far) as b:
            pool = PeerPool(
                zone="z1",
                metrics=PartitionMetrics(registry),
                peers=[spec(a, "z1"), spec(b, "z2")],
            )
            assert (await pool.get(0, 3)).object == "pod-1"  # type: ignore[union-attr]
            a.stop(None)
            for _ in range(3):
                assert (await pool.get(0, 3)).object == "pod-2"  # type: ignore[union-attr]
            refused = registry.get_sample_value(
                "llmkg_partition_requests_total",
                {"peer": address(a), "method": "Get", "code": "UNAVAILABLE"},
            )
            assert refused is not None and refused >= 1
            await pool.close()

    run(body)


# ---- the choice of a replica -------------------------------------------------------------


def test_the_replica_with_fewer_calls_in_flight_is_chosen() -> None:
    busy, idle = ScriptedHandlers("pod-1", [0]), ScriptedHandlers("pod-2", [0])
    busy.gated = {"get"}

    async def body() -> None:
        with serving(busy) as a, serving(idle) as b:
            pool = PeerPool(random=first, peers=[spec(a), spec(b)])
            held = asyncio.ensure_future(pool.get(0, 1))
            await wait_for(busy.entered)  # pod-1 (first on a tie) holds one call
            for _ in range(3):
                assert (await pool.get(0, 2)).object == "pod-2"  # type: ignore[union-attr]
            busy.release()
            assert (await held).object == "pod-1"  # type: ignore[union-attr]
            await pool.close()

    run(body)


def test_the_same_zone_is_preferred_while_its_breaker_lets_calls_through() -> None:
    elsewhere, here = ScriptedHandlers("pod-1", [0]), ScriptedHandlers("pod-2", [0])

    async def body() -> None:
        with serving(elsewhere) as a, serving(here) as b:
            pool = PeerPool(zone="z2", random=first, peers=[spec(a, "z1"), spec(b, "z2")])
            for _ in range(4):
                assert (await pool.get(0, 1)).object == "pod-2"  # type: ignore[union-attr]
            (_, near) = pool.peers
            while near.breaker.state is not BreakerState.OPEN:
                permit = near.breaker.allow()
                assert permit is not None
                near.breaker.record(permit, failed=True)
            assert (await pool.get(0, 1)).object == "pod-1"  # type: ignore[union-attr]
            assert here.calls["get"] == 4
            await pool.close()

    run(body)


def test_a_replica_known_not_ready_is_chosen_last() -> None:
    behind, ready = ScriptedHandlers("pod-1", [0], zone="z1"), ScriptedHandlers("pod-2", [0])
    behind.not_ready = {0}

    async def body() -> None:
        with serving(behind) as a, serving(ready) as b:
            pool = PeerPool(zone="z1", random=first, peers=[spec(a, "z1"), spec(b, "z2")])
            assert (await pool.get(0, 1)).object == "pod-1"  # type: ignore[union-attr]
            await pool.refresh()
            assert (await pool.get(0, 1)).object == "pod-2"  # type: ignore[union-attr]
            await pool.close()

    run(body)


# ---- circuit breakers through the pool ----------------------------------------------------


def test_a_failing_peers_breaker_opens_then_a_trial_closes_it() -> None:
    flaky, steady = ScriptedHandlers("pod-1", [0]), ScriptedHandlers("pod-2", [0])
    flaky.errors["get"] = [PartitionUnavailableError("down")] * 4
    clock = FakeClock()
    registry = CollectorRegistry()

    def state_of(server: PartitionServer) -> float | None:
        return registry.get_sample_value("llmkg_circuit_breaker_state", {"peer": address(server)})

    async def body() -> None:
        with serving(flaky) as a, serving(steady) as b:
            pool = PeerPool(
                zone="z1",
                max_retries=1,
                backoff=Backoff(base=0.001),
                breaker=BreakerSettings(threshold=50, open_for=30, window=10, minimum_calls=4),
                clock=clock,
                metrics=PartitionMetrics(registry),
                peers=[spec(a, "z1"), spec(b, "z2")],
            )
            for _ in range(4):  # each: pod-1 fails, the retry on pod-2 answers
                assert (await pool.get(0, 1)).object == "pod-2"  # type: ignore[union-attr]
            assert flaky.calls["get"] == 4
            assert state_of(a) == BreakerState.OPEN and state_of(b) == BreakerState.CLOSED
            assert (await pool.get(0, 1)).object == "pod-2"  # type: ignore[union-attr]
            assert flaky.calls["get"] == 4, "an open breaker lets no call through"
            clock.advance(30)
            assert state_of(a) == BreakerState.HALF_OPEN
            assert (await pool.get(0, 1)).object == "pod-1", "the trial call"  # type: ignore[union-attr]
            assert state_of(a) == BreakerState.CLOSED
            await pool.close()

    run(body)


def test_a_health_call_is_the_trial_of_a_half_open_breaker() -> None:
    handlers = ScriptedHandlers("pod-1", [0])
    clock = FakeClock()

    async def body() -> None:
        with serving(handlers) as server:
            pool = PeerPool(
                breaker=BreakerSettings(open_for=30, minimum_calls=1),
                clock=clock,
                peers=[spec(server)],
            )
            (peer,) = pool.peers
            peer.breaker.record(peer.breaker.allow(), failed=True)  # type: ignore[arg-type]
            await pool.refresh()
            assert peer.breaker.state is BreakerState.OPEN, "no trial before the timeout"
            clock.advance(30)
            await pool.refresh()
            assert peer.breaker.state is BreakerState.CLOSED
            peer.breaker.record(peer.breaker.allow(), failed=True)  # type: ignore[arg-type]
            clock.advance(30)
            server.stop(None)
            await pool.refresh()
            assert peer.breaker.state is BreakerState.OPEN, "the failed trial"
            assert not handlers.calls, "no request was risked on the peer"
            await pool.close()

    run(body)


def test_with_every_breaker_open_the_call_fails_at_once() -> None:
    handlers = ScriptedHandlers("pod-1", [0])

    async def body() -> None:
        with serving(handlers) as server:
            pool = PeerPool(peers=[spec(server)])
            (peer,) = pool.peers
            for _ in range(10):
                peer.breaker.record(peer.breaker.allow(), failed=True)  # type: ignore[arg-type]
            with pytest.raises(PartitionCallError) as caught:
                await pool.get(0, 1)
            assert caught.value.code is grpc.StatusCode.UNAVAILABLE
            assert "circuit breakers are open" in caught.value.message
            assert not handlers.calls
            with pytest.raises(PartitionCallError, match="no known peer hosts it"):
                await pool.get(5, 1)
            await pool.close()

    run(body)


# ---- metrics -----------------------------------------------------------------------------


def test_calls_are_counted_by_peer_method_and_code() -> None:
    handlers = ScriptedHandlers("pod-1", [0])
    handlers.errors["search"] = [PartitionUnavailableError("x")]
    registry = CollectorRegistry()

    async def body() -> None:
        with serving(handlers) as server:
            pool = PeerPool(
                backoff=Backoff(base=0.001),
                metrics=PartitionMetrics(registry),
                peers=[spec(server, partitions=[0, 7])],
            )
            await pool.search(0, vector(), 1)  # UNAVAILABLE, then OK
            await pool.get(0, 1)
            with pytest.raises(PartitionCallError):
                await pool.get(7, 1)  # not hosted by the pod, though listed for it
            peer = address(server)

            def count(method: str, code: str) -> float | None:
                labels = {"peer": peer, "method": method, "code": code}
                return registry.get_sample_value("llmkg_partition_requests_total", labels)

            assert count("Search", "UNAVAILABLE") == 1
            assert count("Search", "OK") == 1
            assert count("Get", "OK") == 1
            assert count("Get", "NOT_FOUND") == 1
            seconds = registry.get_sample_value(
                "llmkg_partition_request_seconds_count", {"method": "Search"}
            )
            assert seconds == 2
            assert registry.get_sample_value("llmkg_circuit_breaker_state", {"peer": peer}) == 0
            await pool.close()

    run(body)
