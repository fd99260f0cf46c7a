"""One pod of a partitioned graph: an engine for each partition it hosts (each following
its partition of the database, with its own data directory for snapshots), the partition
service that answers the other pods for them, the pool of peers it calls (found by
discovery), and the router that answers the HTTP API with all of them.

Partitioned serving is on when the store is PostgreSQL, ``scalability.enable_distributed``
is set and the distribution has a layout (``partitions`` or ``zones``): then the database
is split into ``partition_count`` partitions. Otherwise every server is a replica of the
one partition (``partition_count`` 1 in the database).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmkg.config import Settings, engine_config
from llmkg.engine import AllocationEngine
from llmkg.engine.config import EngineConfig
from llmkg.engine.graph import Graph
from llmkg.router.handlers import EngineHandlers
from llmkg.router.router import Router, Run
from llmkg.topology import hosted_partitions

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from llmkg.partition.peers import PeerPool
    from llmkg.partition.server import PartitionServer
    from llmkg.store.postgres import PostgresStore
    from llmkg.topology.discovery import Discovery

log = logging.getLogger("llmkg.router")

# Connections of each partition's write store: the router's writes are short and a pod
# holds one store per partition of the database beside its engines' own.
WRITE_POOL_SIZE = 2
# Seconds between asks of every peer what it hosts and whether it is ready: a restarted
# or new peer gets traffic within this, one falling behind loses it.
REFRESH_INTERVAL = 2.0


def partitioned(settings: Settings) -> bool:
    s = settings.scalability
    dist = s.distribution
    return (
        settings.storage.backend == "postgresql"
        and s.enable_distributed
        and dist.partition_count > 1
        and bool(dist.partitions or dist.zones)
    )


class GraphView(Graph):
    """The graph's reads (patterns, entities, children, ancestors, traversals, a search's
    expansion, the export) over every partition: the database answers them, through a
    store whose reads cover all partitions."""

    def __init__(self, store: PostgresStore, config: EngineConfig) -> None:
        self.store = store
        self.config = config


class PartitionedNode:
    """Built by ``open`` (blocking: the engines load their snapshots and catch up) and
    ``start`` (on the event loop: the peer pool, discovery and the router)."""

    def __init__(
        self,
        settings: Settings,
        engines: dict[int, AllocationEngine],
        stores: dict[int, PostgresStore],
        whole: PostgresStore,
        server: PartitionServer,
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.stores = stores
        self.whole = whole
        self.graph = GraphView(whole, next(iter(engines.values())).config)
        self.server = server
        self.peers: PeerPool | None = None
        self.discovery: Discovery | None = None
        self.router: Router | None = None
        self._refresher: asyncio.Future[None] | None = None

    @classmethod
    def open(cls, settings: Settings, on_engine: Callable[[AllocationEngine], None]) -> Any:
        from llmkg.partition.server import PartitionServer
        from llmkg.store.postgres import PostgresStore

        dist = settings.scalability.distribution
        base = dataclasses.replace(engine_config(settings), partition_count=dist.partition_count)
        hosted = hosted_partitions(dist)
        engines: dict[int, AllocationEngine] = {}
        stores: dict[int, PostgresStore] = {}
        whole: PostgresStore | None = None
        try:
            for p in hosted:
                config = dataclasses.replace(
                    base, partition=p, data_directory=base.data_directory / f"partition-{p}"
                )
                engines[p] = AllocationEngine(config)
                on_engine(engines[p])
                log.info("partition %d: %d nodes", p, len(engines[p].index))
            for p in range(dist.partition_count):
                stores[p] = PostgresStore(
                    base.postgres_dsn,
                    partition=p,
                    partition_count=dist.partition_count,
                    pool_size=WRITE_POOL_SIZE,
                    connect_timeout=base.postgres_connect_timeout,
                    statement_timeout=base.postgres_statement_timeout,
                    migrate=base.auto_migrate,
                )
            whole = PostgresStore(
                base.postgres_dsn,
                partition_count=dist.partition_count,
                pool_size=WRITE_POOL_SIZE,
                connect_timeout=base.postgres_connect_timeout,
                statement_timeout=base.postgres_statement_timeout,
                migrate=base.auto_migrate,
                whole_graph=True,
            )
            server = PartitionServer.from_settings(
                settings, EngineHandlers(engines, zone=dist.zone)
            )
            server.start()
        except BaseException:
            for store in [*stores.values(), *([whole] if whole else [])]:
                store.close()
            for engine in engines.values():
                engine.close()
            raise
        return cls(settings, engines, stores, whole, server)

    async def start(self, run: Run, registry: CollectorRegistry | None = None) -> Router:
        """The peers (from discovery; what each hosts, from its Health, refreshed every
        ``REFRESH_INTERVAL`` seconds) and the router."""
        from llmkg.partition.peers import PeerPool
        from llmkg.topology.discovery import from_settings as discovery_from_settings

        dist = self.settings.scalability.distribution
        peers = PeerPool.from_settings(self.settings, zone=dist.zone, registry=registry)
        self.peers = peers
        self.discovery = discovery_from_settings(dist, peers.update_addresses)
        self.discovery.start()
        await peers.refresh(timeout=dist.communication_timeout)
        self._refresher = asyncio.ensure_future(peers.keep_refreshed(REFRESH_INTERVAL))
        first = next(iter(self.engines.values()))
        self.router = Router(
            first.config,
            self.stores,
            self.whole,
            peers,
            run,
            lambda confidence: first.precision.for_new(confidence),
            timeout=dist.communication_timeout,
        )
        return self.router

    def unreachable(self) -> list[int]:
        """Partitions no known peer serves ready (as their last Health answers said): a
        request now would answer 503 for them."""
        if self.peers is None:
            return list(range(len(self.stores)))
        return [
            p
            for p in range(len(self.stores))
            if not any(not peer.known_not_ready(p) for peer in self.peers.replicas(p))
        ]

    def health(self) -> list[tuple[int, bool, str]]:
        """Each hosted partition: whether it has caught up with the database, and why not."""
        out = []
        for p, engine in sorted(self.engines.items()):
            ok, detail = engine.follower.health() if engine.follower else (True, "")
            out.append((p, ok, detail))
        return out

    async def stop(self) -> None:
        """On the event loop: the nudges in flight, then the peers' channels."""
        if self._refresher is not None:
            self._refresher.cancel()
        if self.router is not None:
            await self.router.close()
        if self.peers is not None:
            await self.peers.close()

    def close(self) -> None:
        """Blocking: discovery, the partition service (calls in flight get a second), the
        engines' final checkpoints, then the stores."""
        if self.discovery is not None:
            self.discovery.stop()
        self.server.stop(1.0)
        for engine in self.engines.values():
            engine.close()
        for store in (*self.stores.values(), self.whole):
            store.close()
