"""What the server keeps between requests: the settings, the engine (once loaded), the
worker pool that runs engine calls off the event loop, the metrics, and the phase."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from llmkg.config import ConfigError, Settings, engine_config
from llmkg.engine import AllocationEngine
from llmkg.engine.graph import Graph
from llmkg.router.node import PartitionedNode, partitioned
from llmkg.router.router import Router
from llmkg.server.errors import ApiError
from llmkg.server.metrics import Metrics
from llmkg.store import StoreOpenError, StoreUnavailableError

log = logging.getLogger("llmkg.server")

T = TypeVar("T")
# Seconds between attempts to open an unavailable store at start: doubling to the longest.
START_RETRY_FIRST = 1.0
START_RETRY_LONGEST = 5.0
EXIT_UNUSABLE_STORE = 2
Phase = Literal["starting", "ready", "draining", "stopped", "failed"]


class ServerState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AllocationEngine | None = None
        # Partitioned serving: the pod's partitions, its peers and the router that answers
        # allocate, search, get and delete; ``engine`` is then its first partition's.
        self.node: PartitionedNode | None = None
        self.router: Router | None = None
        self.phase: Phase = "starting"
        # Why the engine is not loaded yet, when it waits for its store (readiness says it).
        self.waiting_for: str | None = None
        self.executor = ThreadPoolExecutor(
            settings.performance.worker_threads, thread_name_prefix="llmkg-worker"
        )
        self.metrics = Metrics(
            settings, lambda: self.engine, lambda: self.node.engines if self.node else {}
        )
        # Set by the runner: ends the process with this exit code (engine failed to load).
        self.request_exit: Callable[[int], None] = lambda code: None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)`` on the worker pool (index and store calls block), in a copy of
        the caller's context: the request's span and id go along (``run_in_executor``
        alone would leave them behind, unlike ``asyncio.to_thread``)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, call)

    def ready_engine(self) -> AllocationEngine:
        # Draining (SIGTERM, during server.drain_delay): only readiness says no, so that
        # load balancers stop sending; what still arrives is served until the listeners
        # close, or every rolling restart would fail the traffic of its delay.
        if self.phase not in ("ready", "draining") or self.engine is None:
            detail = {"starting": "the engine is still loading", "stopped": "shutting down"}
            raise ApiError(
                503,
                detail.get(self.phase, "the engine is not available"),
                code="not_ready",
                headers={"Retry-After": "1"},
            )
        return self.engine

    def graph_reads(self) -> Graph:
        """What answers the reads that walk the store (patterns, entities, children,
        ancestors, traversals, the export): the engine, or on a partitioned graph, where an
        engine reads one partition, the view of every partition in the database."""
        engine = self.ready_engine()
        return engine if self.node is None else self.node.graph

    def open_engine(self) -> None:
        """Load the engine (snapshot + replay, or rebuild); blocking, on the worker pool.
        Partitioned: the engine of every hosted partition, and the partition service."""
        settings = self.settings
        if partitioned(settings):
            node = PartitionedNode.open(settings, self._watch)
            self.node = node
            self.engine = next(iter(node.engines.values()))
            log.info("partitions %s of %d opened", sorted(node.engines), len(node.stores))
            return
        scale = settings.scalability
        if scale.enable_distributed:
            dist = scale.distribution
            log.warning(
                "enable_distributed is set, but partitioned serving needs the PostgreSQL "
                "store and a layout (partitions or zones): serving as a single partition "
                "(id %d of %d)",
                dist.partition_id,
                dist.partition_count,
            )
        engine = AllocationEngine(engine_config(settings))
        self._watch(engine)
        self.engine = engine
        self._ready()

    def _watch(self, engine: AllocationEngine) -> None:
        engine.on_index_search = self.metrics.search_time.observe

    def _ready(self) -> None:
        if self.phase == "starting":
            self.phase = "ready"
        engines = self.node.engines.values() if self.node else [self.engine]
        nodes = sum(len(e.index) for e in engines if e is not None)
        log.info("ready: %d nodes", nodes)

    async def start(self) -> None:
        delay = START_RETRY_FIRST
        while True:
            try:
                await self.run(self.open_engine)
            except StoreUnavailableError as e:
                # A database that is not up yet (started after this server, or failing
                # over) is waited for, not ready, rather than turned into a restart loop.
                if self.phase != "starting":  # shutting down meanwhile
                    return
                self.waiting_for = f"the store is unavailable: {e}"
                log.warning("%s; not ready, trying again in %.0fs", self.waiting_for, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, START_RETRY_LONGEST)
                continue
            except (StoreOpenError, ConfigError) as e:
                # A damaged or too new store (or an unreadable DSN file) will not get better
                # by restarting: exit 2, the code of a bad configuration, with the file's
                # name, not a traceback per restart.
                log.error("cannot open the store: %s", e)
                self.phase = "failed"
                self.request_exit(EXIT_UNUSABLE_STORE)
            except Exception:
                log.exception("the engine failed to load; exiting")
                self.phase = "failed"
                self.request_exit(1)
            else:
                self.waiting_for = None
                if self.node is not None:
                    self.router = await self.node.start(self.run, self.metrics.registry)
                    self._ready()
            return

    async def stop(self) -> None:
        """After the listeners have drained: final checkpoint, store closed."""
        self.phase = "stopped"
        engine, self.engine = self.engine, None
        node, self.node, self.router = self.node, None, None
        if node is not None:
            await node.stop()
            await self.run(node.close)
            log.info("partitions closed (final checkpoints written)")
        elif engine is not None:
            await self.run(engine.close)
            log.info("engine closed (final checkpoint written)")
        self.executor.shutdown(wait=True)
