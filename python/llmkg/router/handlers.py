"""The partition service of one pod, answered by its engines: one ``AllocationEngine`` per
hosted partition, each following its partition of the database."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmkg.engine import AllocationEngine
from llmkg.engine.results import Neighbor, Node, SearchHit
from llmkg.partition.types import (
    HealthInfo,
    PartitionNotHostedError,
    PartitionStatus,
)


class EngineHandlers:
    """``PartitionHandlers`` over ``engines`` (partition -> engine)."""

    def __init__(
        self, engines: Mapping[int, AllocationEngine], zone: str = "", pod: str = ""
    ) -> None:
        self.engines = dict(engines)
        self.zone = zone
        self.pod = pod or os.environ.get("HOSTNAME", "")

    def engine(self, partition: int) -> AllocationEngine:
        engine = self.engines.get(partition)
        if engine is None:
            raise PartitionNotHostedError(f"partition {partition} is not hosted here")
        return engine

    def hosts(self, partition: int) -> bool:
        return partition in self.engines

    def search(
        self,
        partition: int,
        vector: np.ndarray,
        k: int,
        ef: int | None,
        filter: Mapping[str, Any] | None,
    ) -> Sequence[SearchHit]:
        return self.engine(partition).search(vector, k=k, ef=ef, filter=filter)

    def candidates(self, partition: int, vector: np.ndarray, k: int) -> Sequence[Neighbor]:
        engine = self.engine(partition)
        # Caught up first, as a search is: a fact acknowledged a moment ago (by any pod)
        # is a candidate parent of the next one.
        engine._catch_up()
        _, neighbors = engine._candidates(vector, k)
        return neighbors

    def get(self, partition: int, node_id: int) -> Node | None:
        return self.engine(partition).get(node_id)

    def nudge(self, partition: int, seq: int) -> None:
        follower = self.engine(partition).follower
        if follower is not None:
            follower.nudge()

    def health(self) -> HealthInfo:
        statuses = []
        for partition, engine in sorted(self.engines.items()):
            follower = engine.follower
            if follower is None:
                statuses.append(PartitionStatus(partition, True, engine.store.committed_seq, 0))
                continue
            ready, _ = follower.health()
            statuses.append(PartitionStatus(partition, ready, follower.applied, follower.lag))
        return HealthInfo(self.pod, self.zone, statuses)
