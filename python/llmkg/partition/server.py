"""The partition service's server: ``PartitionHandlers`` served over gRPC on
``server.grpc_port``, with the standard health service (grpc.health.v1) beside it.

A synchronous ``grpc.server`` with a thread pool of its own, not ``grpc.aio`` on the HTTP
server's event loop: every handler is a blocking engine call that needs a worker thread
either way, and on threads of its own the service does not queue behind the HTTP
requests on the event loop, nor they behind it. It starts before the API listener and
stops after it (``start``, ``stop``), independent of uvicorn's lifecycle.

Before a handler runs, the request's fields are checked (``codec``) and the partition must
be hosted; what handlers raise becomes a status code (``status_of``): INVALID_ARGUMENT
names the field in its details and in the trailing metadata ``llmkg-field``.
Past ``max_concurrent_rpcs`` calls at once, gRPC answers RESOURCE_EXHAUSTED by itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import TYPE_CHECKING, NoReturn, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from llmkg._core import IndexBusyError
from llmkg.engine import EngineClosedError, FactError, LinkerError, NotCaughtUpError
from llmkg.partition import codec
from llmkg.partition.codec import Limits
from llmkg.partition.tls import server_credentials
from llmkg.partition.types import (
    HealthInfo,
    PartitionHandlers,
    PartitionNotHostedError,
    PartitionOverloadedError,
    PartitionUnavailableError,
)
from llmkg.partition.v1 import partition_pb2 as pb
from llmkg.partition.v1 import partition_pb2_grpc as pb_grpc
from llmkg.server.startup import StartupError
from llmkg.store import StoreError
from llmkg.tracing_grpc import server_interceptors

if TYPE_CHECKING:
    from llmkg.config import Settings
    from llmkg.config.schema import SecuritySettings

log = logging.getLogger("llmkg.partition")

SERVICE = "llmkg.partition.v1.Partition"
FIELD_METADATA = "llmkg-field"  # trailing metadata: the bad field of an INVALID_ARGUMENT
# Calls queued beyond the worker threads, per thread, before gRPC refuses more with
# RESOURCE_EXHAUSTED: a caller then tries the other replica instead of waiting here.
# Room for a replica's whole share when the other is lost (then every pod's fan-out of
# every request comes here): a queued call past its deadline is dropped unanswered.
QUEUED_PER_WORKER = 32

T = TypeVar("T")


def partition_service_name(partition: int) -> str:
    """The health service's name for one hosted partition (``<service>/<partition>``)."""
    return f"{SERVICE}/{partition}"


def status_of(error: Exception) -> tuple[grpc.StatusCode, str, str | None] | None:
    """The status code, details and bad field for a handler's error; None: unexpected."""
    if isinstance(error, FactError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error), error.field
    if isinstance(error, PartitionNotHostedError):
        return grpc.StatusCode.NOT_FOUND, str(error), None
    # Before the unavailable ones: a busy index is the pod's load, not its state.
    if isinstance(error, (PartitionOverloadedError, IndexBusyError)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error) or "overloaded", None
    unavailable = (
        PartitionUnavailableError,
        NotCaughtUpError,
        EngineClosedError,
        LinkerError,
        StoreError,
    )
    if isinstance(error, unavailable):
        return grpc.StatusCode.UNAVAILABLE, str(error) or type(error).__name__, None
    return None


class PartitionServicer(pb_grpc.PartitionServicer):
    def __init__(
        self, handlers: PartitionHandlers, limits: Limits, on_health: Callable[[HealthInfo], None]
    ) -> None:
        self.handlers = handlers
        self.limits = limits
        self.on_health = on_health

    def _serve(
        self, context: grpc.ServicerContext, partition: int | None, work: Callable[[], T]
    ) -> T:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            # Queued past its deadline: the caller has given up; spare the engine.
            _abort(
                context, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the call ran"
            )
        try:
            if partition is not None and not self.handlers.hosts(partition):
                raise PartitionNotHostedError(f"partition {partition} is not hosted here")
            return work()
        except Exception as e:
            status = status_of(e)
            if status is None:
                log.exception("partition call failed")
                _abort(context, grpc.StatusCode.INTERNAL, "internal error")
            code, details, field = status
            if field is not None:
                context.set_trailing_metadata(((FIELD_METADATA, field),))
            _abort(context, code, details)

    def Search(  # noqa: N802 (the service's method names)
        self, request: pb.SearchRequest, context: grpc.ServicerContext
    ) -> pb.SearchResponse:
        def work() -> pb.SearchResponse:
            limits = self.limits
            vector = codec.unpack_vector(request.vector, limits)
            k = codec.check_k(request.k, limits)
            ef = codec.check_ef(request, limits)
            flt = codec.filter_of(request, limits)
            hits = self.handlers.search(request.partition, vector, k, ef, flt)
            return codec.search_response(hits)

        return self._serve(context, request.partition, work)

    def Candidates(  # noqa: N802 (the service's method names)
        self, request: pb.CandidatesRequest, context: grpc.ServicerContext
    ) -> pb.CandidatesResponse:
        def work() -> pb.CandidatesResponse:
            vector = codec.unpack_vector(request.vector, self.limits)
            k = codec.check_k(request.k, self.limits)
            return codec.candidates_response(self.handlers.candidates(request.partition, vector, k))

        return self._serve(context, request.partition, work)

    def Get(  # noqa: N802 (the service's method names)
        self, request: pb.GetRequest, context: grpc.ServicerContext
    ) -> pb.GetResponse:
        def work() -> pb.GetResponse:
            node = self.handlers.get(request.partition, request.node_id)
            return pb.GetResponse(node=None if node is None else codec.node_message(node))

        return self._serve(context, request.partition, work)

    def Nudge(  # noqa: N802 (the service's method names)
        self, request: pb.NudgeRequest, context: grpc.ServicerContext
    ) -> pb.NudgeResponse:
        def work() -> pb.NudgeResponse:
            self.handlers.nudge(request.partition, request.seq)
            return pb.NudgeResponse()

        return self._serve(context, request.partition, work)

    def Health(  # noqa: N802 (the service's method names)
        self, request: pb.HealthRequest, context: grpc.ServicerContext
    ) -> pb.HealthResponse:
        def work() -> pb.HealthResponse:
            info = self.handlers.health()
            self.on_health(info)
            return codec.health_response(info)

        return self._serve(context, None, work)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("context.abort returns only by raising")  # pragma: no cover


class PartitionServer:
    """The service on ``address`` (``host:port``; port 0 picks a free one, see ``port``),
    over TLS when ``security.enable_tls``. The health service answers SERVING for ``""``
    while the server runs, for ``llmkg.partition.v1.Partition`` while every hosted
    partition is ready, and for ``llmkg.partition.v1.Partition/<n>`` while partition n
    is; ``refresh_health`` reads the handlers' ``health()`` (each Health call does too;
    ``health_interval`` seconds: on a timer of its own). ``interceptors`` wrap every
    call (``llmkg.tracing_grpc``'s continue the caller's trace)."""

    def __init__(
        self,
        handlers: PartitionHandlers,
        limits: Limits,
        address: str,
        *,
        security: SecuritySettings | None = None,
        workers: int = 8,
        max_concurrent_rpcs: int | None = None,
        health_interval: float | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
    ) -> None:
        self.handlers = handlers
        self.health = health.HealthServicer()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(workers, thread_name_prefix="llmkg-partition"),
            maximum_concurrent_rpcs=max_concurrent_rpcs or workers * QUEUED_PER_WORKER,
            # gRPC sets SO_REUSEPORT by default: a second server would share the port
            # silently instead of failing to start.
            options=[("grpc.so_reuseport", 0)],
            interceptors=list(interceptors),
        )
        # protoc's gRPC module has no annotations.
        pb_grpc.add_PartitionServicer_to_server(  # type: ignore[no-untyped-call]
            PartitionServicer(handlers, limits, self._mirror), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        try:
            if security is not None and security.enable_tls:
                self.port = self.server.add_secure_port(address, server_credentials(security))
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError as e:
            raise StartupError(f"server.grpc_port {address}: cannot listen ({e})") from None
        self._partitions: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._health_interval = health_interval
        self._timer: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, handlers: PartitionHandlers) -> PartitionServer:
        host, port = settings.server.bind_address, settings.server.grpc_port
        return cls(
            handlers,
            Limits.from_settings(settings),
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            security=settings.security,
            workers=settings.performance.worker_threads,
            health_interval=settings.health_checks.readiness_probe_interval,
            # A call's trace continues from the caller's (none while tracing is off: build
            # the server after llmkg.tracing.start).
            interceptors=server_interceptors(),
        )

    def start(self) -> None:
        self.server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.refresh_health()
        if self._health_interval:
            self._timer = threading.Thread(
                target=self._refresh_every,
                args=(self._health_interval,),
                daemon=True,
                name="llmkg-partition-health",
            )
            self._timer.start()
        log.info("partition service listening on port %d", self.port)

    def _refresh_every(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.refresh_health()

    def refresh_health(self) -> None:
        try:
            info = self.handlers.health()
        except Exception:
            log.exception("partition health failed")
            return
        self._mirror(info)

    def _mirror(self, info: HealthInfo) -> None:
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        with self._lock:
            if self._stopped.is_set():
                return
            hosted = {s.partition for s in info.partitions}
            for gone in self._partitions - hosted:
                self.health.set(
                    partition_service_name(gone), health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                )
            self._partitions = hosted
            for status in info.partitions:
                self.health.set(
                    partition_service_name(status.partition),
                    serving if status.ready else not_serving,
                )
            all_ready = bool(info.partitions) and all(s.ready for s in info.partitions)
            self.health.set(SERVICE, serving if all_ready else not_serving)

    def stop(self, grace: float | None = None) -> None:
        """Health answers NOT_SERVING at once; calls in flight get ``grace`` seconds to
        finish (None: cancelled at once), new ones are refused."""
        with self._lock:
            self._stopped.set()
            self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self._timer is not None:
            self._timer.join()
