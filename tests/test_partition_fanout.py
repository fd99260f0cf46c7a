"""PeerPool's fan-out over partitions (each partition's answer or error, by the deadline,
cancelled with its caller), nudges to every replica, and the peer list: replaced at run
time, by address from discovery's thread, and learned from the peers' Health."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from partitionlib import ScriptedHandlers, address, run, serving, spec, vector, wait_for

from llmkg.partition import PartitionCallError, PeerPool, PeerSpec

# ---- fan-out -----------------------------------------------------------------------------


def test_fan_out_reports_each_partitions_answer_or_error() -> None:
    one, two = ScriptedHandlers("pod-1", [0, 1]), ScriptedHandlers("pod-2", [2])

    async def body() -> None:
        with serving(one) as a, serving(two) as b:
            pool = PeerPool(
                partition_count=4, peers=[spec(a, partitions=[0, 1]), spec(b, partitions=[2])]
            )
            found = await pool.fan_out_candidates(vector(1), 1)
            assert not found.complete
            assert {p: [c.node_id for c in r] for p, r in found.results.items()} == {
                0: [1000],
                1: [1001],
                2: [2002],
            }
            assert set(found.errors) == {3}
            assert found.errors[3].code is grpc.StatusCode.UNAVAILABLE
            hits = await pool.fan_out_search(vector(1), 2, partitions=[0, 2])
            assert hits.complete
            assert {p: {h.node.subject for h in r} for p, r in hits.results.items()} == {
                0: {"pod-1"},
                2: {"pod-2"},
            }
            await pool.close()

    run(body)


def test_fan_out_ends_at_the_deadline_with_the_answers_it_has() -> None:
    quick, slow = ScriptedHandlers("pod-1", [0, 1]), ScriptedHandlers("pod-2", [2])
    slow.gated = {"search"}

    async def body() -> None:
        with serving(quick) as a, serving(slow) as b:
            pool = PeerPool(
                partition_count=3, peers=[spec(a, partitions=[0, 1]), spec(b, partitions=[2])]
            )
            hits = await pool.fan_out_search(vector(2), 1, timeout=1.0)
            assert not slow.finished.is_set(), "back before the slow partition answered"
            assert set(hits.results) == {0, 1}
            assert hits.errors[2].code is grpc.StatusCode.DEADLINE_EXCEEDED
            slow.release()
            await pool.close()

    run(body)


def test_fan_out_is_bounded_by_the_deadline_whatever_the_calls_do() -> None:
    async def body() -> None:
        pool = PeerPool(partition_count=2)
        never = asyncio.Event()

        async def call(partition: int, remaining: float) -> int:
            assert 0 < remaining <= 0.5
            if partition == 1:
                await never.wait()  # a call that ignores its deadline
            return partition

        # (wait_for: should the bound be lost, this test fails instead of hanging)
        result = await asyncio.wait_for(pool.fan_out(call, timeout=0.5), 60)
        assert result.results == {0: 0}
        assert result.errors[1].code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert not never.is_set()

    run(body)


def test_a_cancelled_fan_out_cancels_its_calls() -> None:
    slow = ScriptedHandlers("pod-1", [0])
    slow.gated = {"search"}

    async def body() -> None:
        with serving(slow) as server:
            pool = PeerPool(timeout=60, partition_count=1, peers=[spec(server)])
            fan_out = asyncio.ensure_future(pool.fan_out_search(vector(), 1))
            await wait_for(slow.entered)
            (peer,) = pool.peers
            assert peer.in_flight == 1
            fan_out.cancel()
            for _ in range(200):  # poll: the call's cancellation reaches its task
                if peer.in_flight == 0:
                    break
                await asyncio.sleep(0.05)
            assert peer.in_flight == 0, "the call was cancelled with the fan-out"
            assert not slow.finished.is_set()
            assert fan_out.cancelled()
            await pool.close()

    run(body)


def test_nudge_reaches_every_replica() -> None:
    one, two = ScriptedHandlers("pod-1", [0]), ScriptedHandlers("pod-2", [0])

    async def body() -> None:
        with serving(one) as a, serving(two) as b:
            pool = PeerPool(peers=[spec(a), spec(b)])
            assert await pool.nudge(0, 12) == {address(a): None, address(b): None}
            b.stop(None)
            outcome = await pool.nudge(0, 13)
            assert outcome[address(a)] is None
            assert outcome[address(b)].code is grpc.StatusCode.UNAVAILABLE  # type: ignore[union-attr]
            assert (one.calls["nudge"], two.calls["nudge"]) == (2, 1), "not retried"
            await pool.close()

    run(body)


# ---- the peer list -----------------------------------------------------------------------


def test_the_peer_list_changes_at_run_time_and_is_learned_from_health() -> None:
    one, two = ScriptedHandlers("pod-1", [0], zone="z9"), ScriptedHandlers("pod-2", [0, 1])

    async def body() -> None:
        with serving(one) as a, serving(two) as b:
            pool = PeerPool(partition_count=2, peers=[PeerSpec(address(a))])
            with pytest.raises(PartitionCallError, match="no known peer hosts it"):
                await pool.get(0, 1)
            outcomes = await pool.refresh()
            assert outcomes[address(a)].pod == "pod-1"  # type: ignore[union-attr]
            (peer,) = pool.peers
            assert peer.learned == {0: True} and peer.zone == "z9"
            assert (await pool.get(0, 1)).object == "pod-1"  # type: ignore[union-attr]

            pool.update([PeerSpec(address(a)), spec(b, partitions=[0, 1])])
            assert pool.peers[0] is peer, "a kept peer keeps its state"
            assert (await pool.get(1, 1)).object == "pod-2"  # type: ignore[union-attr]
            pool.update([spec(b, partitions=[0, 1])])
            assert [p.address for p in pool.replicas(0)] == [address(b)]
            assert (await pool.get(0, 1)).object == "pod-2"  # type: ignore[union-attr]
            assert one.calls["get"] == 1
            await pool.close()

    run(body)


def test_discovery_may_change_the_addresses_from_its_own_thread() -> None:
    one, two = ScriptedHandlers("pod-1", [0]), ScriptedHandlers("pod-2", [1], zone="z2")

    async def body() -> None:
        with serving(one) as a, serving(two) as b:
            pool = PeerPool(partition_count=2, peers=[spec(a, "z1", [0])])
            assert (await pool.get(0, 1)).object == "pod-1"  # type: ignore[union-attr]
            # As discovery calls on_change: on its refresh thread.
            changed = threading.Thread(
                target=pool.update_addresses, args=((address(a), address(b)),)
            )
            changed.start()
            await asyncio.to_thread(changed.join)
            refreshing = asyncio.ensure_future(pool.keep_refreshed(0.05))
            try:
                for _ in range(200):  # poll: until the new peer has been asked
                    if pool.replicas(1):
                        break
                    await asyncio.sleep(0.05)
                assert [p.address for p in pool.replicas(1)] == [address(b)]
                assert pool.peers[0].spec == spec(a, "z1", [0]), "a known peer keeps its spec"
                assert pool.peers[1].zone == "z2"
                assert (await pool.get(1, 1)).object == "pod-2"  # type: ignore[union-attr]
            finally:
                refreshing.cancel()
            await pool.close()

    run(body)
