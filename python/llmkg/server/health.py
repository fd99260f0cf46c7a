"""Probes: ``/health/live`` answers while the event loop does; ``/health/ready`` only once
the engine has loaded and replayed, while the store commits and answers reads and the
index linker is not failing, on a shared PostgreSQL store once the follower has applied
what the database had at start (``follow``, with the lag), and while each enabled check of
``[health_checks.dependencies]`` passes; never while draining.

The ``checkpoint`` check reports failing index snapshots (e.g. a full disk) but does not
make the server unready: every answer is still right (the store is the truth; the snapshot
only shortens the next start's replay), and taking replicas out of rotation for it would
turn a full disk into an outage of reads too. The alert on the checkpoint metrics is
what calls an operator.

On a shared PostgreSQL store with ``stale_reads``, a database that cannot be reached
does not make a server unready either, once it has caught up at start: the database is
down for every server alike, and the reads each answers from its copy are all that is
left to serve until a primary is back (writes answer 503 meanwhile)."""

from __future__ import annotations

import time
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from llmkg.engine import AllocationEngine
from llmkg.engine.quantization import resident_bytes
from llmkg.server.models import Check, HealthResponse
from llmkg.server.state import ServerState

PROBE_KEY = "llmkg-health-probe"


def _json(body: HealthResponse, status: int) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


class Health:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._cached: tuple[float, dict[str, Check]] | None = None

    def partition(self) -> dict[str, object]:
        s = self.state.settings.scalability
        dist = s.distribution
        node = self.state.node
        if node is not None:
            return {
                "id": dist.partition_id,
                "count": dist.partition_count,
                "mode": "partitioned",
                "distributed": True,
                "hosted": sorted(node.engines),
                "zone": dist.zone,
                "note": "",
            }
        return {
            "id": dist.partition_id,
            "count": dist.partition_count if s.enable_distributed else 1,
            "mode": "single-partition",
            "distributed": s.enable_distributed,
            "note": (
                "partitioned serving needs the PostgreSQL store and a layout (partitions "
                "or zones): serving as a single partition"
            )
            if s.enable_distributed
            else "",
        }

    def checks(self) -> dict[str, Check]:
        """The enabled checks, recomputed at most every ``readiness_probe_interval``."""
        interval = self.state.settings.health_checks.readiness_probe_interval
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < interval:
            return self._cached[1]
        engine = self.state.engine
        deps = self.state.settings.health_checks.dependencies
        checks: dict[str, Check] = {}
        if engine is None:
            return {"engine": Check(False, "not loaded")}
        checks["checkpoint"] = Check(True, engine.checkpoints.status().describe())
        # Always checked: a server whose store cannot commit, or whose linker keeps
        # failing, answers writes with 503 and should get no traffic until it recovers.
        checks["store"] = self._store_check(engine)
        checks["linker"] = Check(*engine.linker.health())
        if engine.follower is not None:
            # Ready = caught up: until the changes the database had at start are applied,
            # this server would answer without facts the others acknowledged.
            checks["follow"] = Check(*engine.follower.health())
        if deps.check_hnsw_index:
            n = len(engine.index)
            checks["index"] = Check(True, f"{n} nodes")
        if deps.check_cache_connectivity:
            tiers = engine.records.tiers
            if tiers is None:
                checks["cache"] = Check(True, "caching disabled")
            else:
                # In-process tiers: a lookup that returns is the whole of "connectivity"
                # (a probe put could be refused by admission, so none is made).
                tiers.get(PROBE_KEY)
                rates = engine.records.stats()
                detail = f"hit rate l1 {rates['l1_hit_rate']:.3f}, l2 {rates['l2_hit_rate']:.3f}"
                checks["cache"] = Check(True, detail)
        node = self.state.node
        if node is not None:
            # Ready once every hosted partition has caught up with the database.
            hosted = node.health()
            checks["partitions"] = Check(
                all(ok for _, ok, _ in hosted),
                "; ".join(f"{p}: {detail or 'ready'}" for p, _, detail in hosted),
            )
            # And every partition reachable: a pod that knows no ready replica of one
            # would answer every search and allocation 503.
            missing = node.unreachable()
            checks["peers"] = Check(
                not missing,
                f"no ready replica known of partitions {missing}" if missing else "all known",
            )
        elif deps.check_partition_health:
            p = self.partition()
            checks["partition"] = Check(True, f"single partition {p['id']} of {p['count']}")
        if deps.check_memory_usage:
            resident = resident_bytes() or 0
            limit = engine.config.memory_pressure_threshold * engine.precision.budget
            checks["memory"] = Check(
                resident <= limit,
                f"resident {resident} bytes, pressure threshold {int(limit)} bytes",
            )
        self._cached = (now, checks)
        return checks

    def _store_check(self, engine: AllocationEngine) -> Check:
        ok, detail = engine.store.health()
        if not ok and engine.follower is not None and engine.follower.stale_reads:
            # A shared database that is down is down for every server: out of rotation,
            # all of them would be, and the reads they can still answer with it.
            return Check(True, f"{detail}; reads answered from this server's copy, writes 503")
        return Check(ok, detail)

    async def live(self, request: Request) -> Response:
        return _json(HealthResponse("ok"), 200)

    async def ready(self, request: Request) -> Response:
        phase = self.state.phase
        if phase != "ready":
            status: Literal["draining", "starting"] = (
                "draining" if phase in ("draining", "stopped") else "starting"
            )
            loading = self.state.waiting_for or "loading and replaying the store"
            detail = "shutting down" if status == "draining" else loading
            body = HealthResponse(status, {"engine": Check(False, detail)}, self.partition())
            return _json(body, 503)
        checks = await self.state.run(self.checks)
        ok = all(c.ok for c in checks.values())
        return _json(
            HealthResponse("ready" if ok else "not_ready", checks, self.partition()),
            200 if ok else 503,
        )
