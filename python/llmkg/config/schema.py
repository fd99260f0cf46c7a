"""Every key of the config, its type and its default: the production values.

The sections mirror ``config/production.toml``. Keys marked ``llmkg:`` are llmkg's own,
beyond the deployment's original key set. Keys of parts that do not exist yet (distribution
between partitions, profiling, the memory arenas of a native runtime) are validated here and
listed as not yet active in ``INACTIVE`` and the configuration reference.

What a key does is said by the comment lines above it or the comment at its end: the
configuration reference (``python -m llmkg.config.docs``) is generated from them.

These defaults are also the defaults of the embedded engine's ``EngineConfig``
(``llmkg/engine/config.py`` reads them from here), and the named types below are the
bounds both check: a default or a bound is written once, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias

import msgspec

from llmkg import _core
from llmkg.config.units import ByteSize, Duration, parse_size

if TYPE_CHECKING:
    from llmkg._core import _CachePolicyName, _MetricName, _PrecisionName

    Precision: TypeAlias = _PrecisionName
    CachePolicy: TypeAlias = _CachePolicyName
    Metric: TypeAlias = _MetricName
else:
    # The names the Rust core accepts, taken from it rather than copied (its stub,
    # _core.pyi, spells them out for type checkers; a test holds the two equal).
    Precision = Literal[_core.PRECISIONS]  # from most to least memory per node
    CachePolicy = Literal[_core.CACHE_POLICIES]
    Metric = Literal[_core.METRICS]

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
# Bounds of keys that the engine's settings (EngineConfig) check too.
Dimension = Annotated[int, msgspec.Meta(ge=1, le=65_536)]
LinksPerNode = Annotated[int, msgspec.Meta(ge=2, le=256)]  # HNSW's M
SearchBeam = Annotated[int, msgspec.Meta(ge=1, le=10_000)]  # ef of a search
MaxLayer = Annotated[int, msgspec.Meta(ge=0, le=15)]
Neighbors = Annotated[int, msgspec.Meta(ge=0, le=1000)]
TextLength = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
CacheShards = Annotated[int, msgspec.Meta(ge=1, le=4096)]
PoolSize = Annotated[int, msgspec.Meta(ge=1, le=1000)]
CompressionLevel = Annotated[int, msgspec.Meta(ge=1, le=22)]
PressureThreshold = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
StoreBackend = Literal["sqlite", "postgresql"]
Durability = Literal["fsync", "interval"]


# Each section says `frozen=True` again: msgspec would inherit it, but type checkers read
# a subclass without it as a mutable dataclass extending a frozen one.
class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class ServerSettings(Section, frozen=True):
    # the address both listeners bind (API and metrics)
    bind_address: str = "0.0.0.0"
    # the API and the health probes (HTTPS when security.enable_tls)
    http_port: Port = 8080
    grpc_port: Port = 8081  # reserved for the partition layer
    # the Prometheus listener (plain HTTP, no authentication)
    metrics_port: Port = 9090
    # open connections at most; past them uvicorn answers 503
    max_connections: Positive = 10_000
    connection_timeout: Duration = Duration(30)  # idle keep-alive connections are closed
    request_timeout: Duration = Duration(60)  # a request running longer answers 504
    max_body_size: ByteSize = parse_size("4MB")  # llmkg: larger bodies answer 413
    shutdown_timeout: Duration = Duration(30)  # llmkg: bound on draining at SIGTERM
    # llmkg: at SIGTERM, not ready for this long before the listeners close
    drain_delay: Duration = Duration(5)


class LoggingSettings(Section, frozen=True):
    # the level of llmkg's log records (RUST_LOG sets the Rust core's)
    level: Literal["trace", "debug", "info", "warning", "error", "critical"] = "info"
    # JSON lines or plain text
    format: Literal["json", "text"] = "json"
    # the stream the log is written to
    output: Literal["stdout", "stderr"] = "stdout"
    structured: bool = True  # JSON lines carry request id, route, status... beside the message
    access_log: bool = True  # llmkg: one line per request


class HnswSettings(Section, frozen=True):
    # the length of every embedding vector
    dimension: Dimension = 768
    max_connections: LinksPerNode = 32  # M: links per node
    # the beam width of the search that links a new node
    ef_construction: Positive = 400
    # the beam width of a search (a request's ef overrides it)
    ef_search: SearchBeam = 100
    # the highest level a node may get
    max_layer: MaxLayer = 5
    # llmkg: the similarity: cosine, inner product or negative squared L2
    metric: Metric = "cosine"
    # llmkg: longest wait of a checkpoint, delete or allocation for the index linker
    link_timeout: Duration = Duration(30)
    link_attempts: Positive = 5  # llmkg: failed links in a row that make readiness false


class CacheL1Settings(Section, frozen=True):
    # "lru": one shard under one lock; "concurrent-lru": sharded like L2
    type: Literal["lru", "concurrent-lru"] = "lru"
    # how long an entry lives; 0: no expiry
    ttl: Duration = Duration(3600)
    # the weight bound of the tier (str/bytes values weigh their length); 0: none
    max_memory: ByteSize = parse_size("1GB")


class CacheL2Settings(Section, frozen=True):
    # "lru": one shard under one lock; "concurrent-lru": `shards` shards
    type: Literal["lru", "concurrent-lru"] = "concurrent-lru"
    # how long an entry lives; 0: no expiry
    ttl: Duration = Duration(6 * 3600)
    # the weight bound of the tier; 0: none
    max_memory: ByteSize = parse_size("8GB")
    # shards of a concurrent-lru tier, each with its own lock
    shards: CacheShards = 16


class CacheSettings(Section, frozen=True):
    # entries of the L1 record cache (a bound: its memory grows with the entries held)
    l1_size: Positive = 100_000
    # entries of the L2 record cache (a bound: its memory grows with the entries held)
    l2_size: Positive = 10_000_000
    # graph neighbours of a node read from the store that are brought into L2; 0: off
    prefetch_distance: NonNegative = 50
    # load the most-read nodes (warmup_count) into the caches at start
    cache_warmup_on_startup: bool = True
    # W-TinyLFU admission (scans do not flush the hot set) or exact LRU
    eviction_policy: CachePolicy = "lru-with-frequency"
    warmup_count: NonNegative = 10_000  # llmkg: most-read nodes loaded at start
    l1: CacheL1Settings = msgspec.field(default_factory=CacheL1Settings)
    l2: CacheL2Settings = msgspec.field(default_factory=CacheL2Settings)

    @property
    def l1_shards(self) -> int:
        """A "lru" tier is one shard under one lock; a "concurrent-lru" L1 has L2's shards."""
        return 1 if self.l1.type == "lru" else self.l2.shards

    @property
    def l2_shards(self) -> int:
        return 1 if self.l2.type == "lru" else self.l2.shards


class DiscoverySettings(Section, frozen=True):
    # how peers are found: the Kubernetes headless Service or a static list
    type: Literal["kubernetes", "static"] = "kubernetes"
    # the Kubernetes namespace of the peers
    namespace: str = "llmkg-production"
    # the headless Service whose DNS name lists the ready peers
    # (service_name.namespace.svc)
    service_name: str = "llmkg-scalable-allocation-headless"
    # the peers' partition port
    port: Port = 8081
    # llmkg: type = "static": the peers' partition addresses, "host:port" ("[v6]:port");
    # their zones and partitions are asked of each peer
    peers: list[str] = msgspec.field(default_factory=list)
    # llmkg: type = "kubernetes": how often the Service's DNS name is resolved again; more
    # than 0
    refresh_interval: Duration = Duration(10)


class DistributionSettings(Section, frozen=True):
    # partitions of the graph (a fact's home partition: a hash of its triple)
    partition_count: Positive = 8
    # llmkg: this process's partition, also set by LLMKG_PARTITION_ID
    partition_id: NonNegative = 0
    # llmkg: the servers that hold each partition, in different zones when there are as
    # many zones (llmkg.topology.assign places them)
    replication_factor: Positive = 2
    # llmkg: the partitions this server hosts; []: this pod's share of the zones layout
    # (zones, pods_per_zone, zone, pod_index) when zones is set, else [partition_id]
    partitions: list[NonNegative] = msgspec.field(default_factory=list)
    # llmkg: this server's availability zone, also set by LLMKG_ZONE; "": unknown
    zone: str = ""
    # llmkg: the zones layout: these zones, each with pods_per_zone servers (one
    # StatefulSet per zone), share the replicas; []: no layout
    zones: list[str] = msgspec.field(default_factory=list)
    # llmkg: the servers in each zone of zones
    pods_per_zone: Positive = 1
    # llmkg: this server's place among the pods_per_zone of its zone (the StatefulSet
    # ordinal), also set by LLMKG_POD_INDEX
    pod_index: NonNegative = 0
    # deadline of a call to a peer partition
    communication_timeout: Duration = Duration(5)
    # retries of a call to a peer partition
    max_retries: NonNegative = 3
    # how the delay between retries grows
    retry_backoff: Literal["exponential", "linear", "constant"] = "exponential"
    # failures that open a peer's circuit breaker
    circuit_breaker_threshold: Positive = 50
    # how long an open circuit breaker stays open
    circuit_breaker_timeout: Duration = Duration(30)
    discovery: DiscoverySettings = msgspec.field(default_factory=DiscoverySettings)


class PrecisionLevels(Section, frozen=True):
    # precision of nodes at or above the first band edge
    high_importance: Precision = "full"
    # precision of nodes between the first and second edges
    medium_importance: Precision = "q8"
    # precision of nodes between the second and third edges
    low_importance: Precision = "q4"
    # precision of nodes below the third edge
    very_low_importance: Precision = "binary"

    def by_band(self) -> dict[str, Precision]:
        """The precision of each importance band, as the engine names the bands."""
        return {
            "high": self.high_importance,
            "medium": self.medium_importance,
            "low": self.low_importance,
            "very_low": self.very_low_importance,
        }


class QuantizationSettings(Section, frozen=True):
    # precision from importance = min(1, confidence + 0.1 * log2(1 + reads))
    enable_adaptive: bool = True
    default_precision: Precision = "q8"  # every node's precision when enable_adaptive = false
    # the edge t of the importance bands [t, t/2, t/4], unless precision_bands is set
    importance_threshold: Fraction = 0.7
    # share of the memory budget past which new nodes go one level cheaper and a background pass
    # demotes the least important
    memory_pressure_threshold: PressureThreshold = 0.85
    # llmkg: the three descending importance edges of the high/medium/low bands; empty:
    # derived from importance_threshold t as [t, t/2, t/4]
    precision_bands: list[Fraction] = msgspec.field(default_factory=list)
    precision_levels: PrecisionLevels = msgspec.field(default_factory=PrecisionLevels)


class ScalabilitySettings(Section, frozen=True):
    # when false, no HNSW index: every search is an exact scan
    enable_hnsw: bool = True
    # when false, no L1/L2 record caches: every read goes to the store
    enable_caching: bool = True
    # runs as one partition until the partition layer exists
    enable_distributed: bool = True
    # when false, every node is at full precision, always
    enable_quantization: bool = True
    hnsw: HnswSettings = msgspec.field(default_factory=HnswSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    distribution: DistributionSettings = msgspec.field(default_factory=DistributionSettings)
    quantization: QuantizationSettings = msgspec.field(default_factory=QuantizationSettings)


class PrometheusSettings(Section, frozen=True):
    # the path of the metrics on metrics_port
    endpoint: Annotated[str, msgspec.Meta(pattern="^/")] = "/metrics"
    # when false, the latency histograms export their count and sum only
    enable_histogram: bool = True
    # bucket bounds of the latency histograms, in seconds
    histogram_buckets: Annotated[list[float], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0]
    )


class JaegerSettings(Section, frozen=True):
    # the Jaeger agent's UDP endpoint; spans go to monitoring.otlp_endpoint instead
    agent_endpoint: str = "jaeger-agent:6831"
    # the service name of the agent's protocol; spans name the service "llmkg"
    service_name: str = "llmkg-scalable-allocation"
    # attributes of every span (resource attributes: Jaeger shows them as process tags)
    tags: dict[str, str] = msgspec.field(
        default_factory=lambda: {"version": "v2a.1.0", "environment": "production"}
    )


class MonitoringSettings(Section, frozen=True):
    # when false, no metrics listener
    enable_metrics: bool = True
    # distributed tracing: OpenTelemetry spans of requests and of the engine's steps,
    # exported to otlp_endpoint; when false, nothing of OpenTelemetry is loaded
    enable_tracing: bool = True
    # continuous profiling
    enable_profiling: bool = False
    # share of new traces sampled (a caller's traceparent decides for its own trace)
    sample_rate: Fraction = 0.1
    # llmkg: the OTLP/HTTP receiver of the spans (Jaeger's collector takes OTLP on port
    # 4318); a URL without a path gets /v1/traces
    otlp_endpoint: Annotated[str, msgspec.Meta(pattern="^https?://[^/]")] = (
        "http://jaeger-collector:4318"
    )
    # llmkg: the longest one export of spans may take, connecting and retries included; a
    # batch still unsent then is dropped (more than 0)
    otlp_timeout: Duration = Duration(5)
    prometheus: PrometheusSettings = msgspec.field(default_factory=PrometheusSettings)
    jaeger: JaegerSettings = msgspec.field(default_factory=JaegerSettings)


class PersistenceSettings(Section, frozen=True):
    sync_interval: Duration = Duration(30)  # the loss window of durability = "interval"
    # an index snapshot at least this often
    checkpoint_interval: Duration = Duration(300)
    # an index snapshot once this many bytes of facts and vectors were written since the last (what
    # a restart would replay)
    max_wal_size: ByteSize = parse_size("1GB")
    # when false, index snapshots are written uncompressed
    enable_compression: bool = True
    # llmkg: "fsync": a 200 means on disk; "interval": fsync every sync_interval
    durability: Durability = "fsync"
    # llmkg: longest wait of a write for its commit (then 503); more than 0
    write_timeout: Duration = Duration(30)


class PostgresqlSettings(Section, frozen=True):
    """llmkg: the whole section; used when storage.backend = "postgresql"."""

    # A libpq connection string ("host=db dbname=llmkg user=llmkg password=...") or URI
    # ("postgresql://llmkg:...@db/llmkg"); masked in --check-config and never logged
    dsn: str = ""
    # a file holding the DSN (a mounted Kubernetes Secret), read at start; instead of dsn
    dsn_file: str = ""
    # connections to the database
    pool_size: PoolSize = 10
    # the wait to connect, and for a free pooled connection
    connect_timeout: Duration = Duration(5)
    # a statement running longer is cancelled; 0: no limit
    statement_timeout: Duration = Duration(30)
    # how often a server polls the database for the changes of the other servers (and at
    # once when one of its own writes commits); more than 0
    follow_interval: Duration = Duration(0.05)
    # how long a search or get waits for this server to apply the changes the database
    # had when it arrived (read-your-writes across servers); past it 503 not_caught_up
    catch_up_timeout: Duration = Duration(5)
    # while the database cannot be reached (no primary), a search or get is answered from
    # this server's copy, which may miss a write another server acknowledged just before;
    # false: 503 store_unavailable instead
    stale_reads: bool = True


class StorageSettings(Section, frozen=True):
    # the only kind: facts kept on disk
    type: Literal["persistent"] = "persistent"
    # llmkg: where the facts are: "sqlite" (a file in data_directory) or "postgresql" (a
    # database several processes share; data_directory keeps the index snapshots)
    backend: StoreBackend = "sqlite"
    # llmkg: whether the server upgrades an older store format or schema when it starts;
    # false: it refuses to start (exit 2) until `llmkg-server migrate` has run
    auto_migrate: bool = True
    # the store (SQLite) and the index snapshots; one engine owns it (a lock file)
    data_directory: Annotated[str, msgspec.Meta(min_length=1)] = "/var/lib/llmkg"
    # where backups are written, one folder each
    backup_directory: Annotated[str, msgspec.Meta(min_length=1)] = "/var/lib/llmkg/backup"
    # llmkg: how many backups `backup` keeps in backup_directory (the newest); 0 keeps all
    backup_retention: Annotated[int, msgspec.Meta(ge=0)] = 7
    # index snapshots zstd-compressed, or "none"
    compression: Literal["zstd", "none"] = "zstd"
    # the zstd level of index snapshots
    compression_level: CompressionLevel = 3
    persistence: PersistenceSettings = msgspec.field(default_factory=PersistenceSettings)
    postgresql: PostgresqlSettings = msgspec.field(default_factory=PostgresqlSettings)  # llmkg

    @property
    def snapshot_compression_level(self) -> int | None:
        """The zstd level of index snapshots; None: written uncompressed."""
        compressed = self.compression == "zstd" and self.persistence.enable_compression
        return self.compression_level if compressed else None


class MemorySettings(Section, frozen=True):
    # arena of a native allocator (the core uses the system allocator)
    arena_size: ByteSize = parse_size("64MB")
    # allocations past it bypass the arenas
    large_allocation_threshold: ByteSize = parse_size("1MB")
    # block sizes of the memory pools
    memory_pool_sizes: list[Positive] = msgspec.field(default_factory=lambda: [64, 1024, 65536])
    # llmkg: the memory budget of adaptive precision; 0: the cgroup limit, else physical memory
    budget: ByteSize = ByteSize(0)


class PerformanceSettings(Section, frozen=True):
    # threads of the engine's pool (engine calls run off the event loop)
    worker_threads: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    # threads of a native I/O runtime
    io_threads: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    # Starlette's limit on threads running blocking calls
    max_blocking_threads: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16
    # the stack of the worker threads (at least 256KB)
    stack_size: ByteSize = parse_size("2MB")
    memory: MemorySettings = msgspec.field(default_factory=MemorySettings)


class AuthenticationSettings(Section, frozen=True):
    # "jwt": bearer tokens with scopes on the API routes; "none": no authentication
    type: Literal["jwt", "none"] = "jwt"
    # the HMAC secret (at least 32 bytes; trailing whitespace stripped)
    secret_key_file: str = "/etc/secrets/jwt-secret"
    # lifetime of the access tokens llmkg-server token mints
    token_expiry: Duration = Duration(24 * 3600)
    # lifetime of refresh tokens
    refresh_token_expiry: Duration = Duration(7 * 86400)
    # llmkg: the only signing algorithm accepted
    algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    audience: str = ""  # llmkg: the aud claim every token must carry; "": not checked
    issuer: str = ""  # llmkg: the iss claim every token must carry; "": not checked
    # llmkg: per client address, failed authentications (401s) allowed a minute: past
    # them the address gets 429 on guarded routes and refresh until it slows down; 0: off
    auth_failures_per_minute: NonNegative = 60
    refresh_per_minute: NonNegative = 60  # llmkg: refreshes per client address; 0: off
    # llmkg: token ids (jti) refused with 401, one a line, "#" comments; re-read when it
    # changes; "": none
    revoked_tokens_file: str = ""


class RateLimitSettings(Section, frozen=True):
    # llmkg: a token bucket per subject (per address without authentication)
    enabled: bool = True
    # the bucket's refill rate; past it a request gets 429
    requests_per_second: Annotated[float, msgspec.Meta(gt=0)] = 1000.0
    # the bucket's size
    burst: Positive = 2000


class SecuritySettings(Section, frozen=True):
    # the API port speaks only HTTPS (cert_file, key_file)
    enable_tls: bool = True
    # PEM certificate chain of the API port
    cert_file: str = "/etc/certs/tls.crt"
    # PEM private key of cert_file (not encrypted)
    key_file: str = "/etc/certs/tls.key"
    # CA bundle that signs client certificates (require_client_cert)
    ca_file: str = "/etc/certs/ca.crt"
    # handshakes below it are refused
    min_tls_version: Literal["1.2", "1.3"] = "1.2"
    # llmkg: the TLS 1.2 cipher suites (OpenSSL syntax): Mozilla's "intermediate" profile,
    # ECDHE with AES-GCM or ChaCha20-Poly1305, no CBC. TLS 1.3's suites are all AEAD.
    tls_ciphers: Annotated[str, msgspec.Meta(min_length=1)] = (
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    )
    require_client_cert: bool = False  # llmkg: verify client certificates against ca_file
    authentication: AuthenticationSettings = msgspec.field(default_factory=AuthenticationSettings)
    rate_limit: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)  # llmkg


class HealthDependencies(Section, frozen=True):
    # readiness checks the index
    check_hnsw_index: bool = True
    # readiness checks the record caches
    check_cache_connectivity: bool = True
    # readiness reports the partition (single-partition until the partition layer exists)
    check_partition_health: bool = True
    # readiness requires memory under memory_pressure_threshold of the budget
    check_memory_usage: bool = True


class HealthSettings(Section, frozen=True):
    # the start period of the Docker HEALTHCHECK and the Kubernetes startup probe
    startup_probe_delay: Duration = Duration(10)
    # the period of the liveness probe and of the Docker HEALTHCHECK
    liveness_probe_interval: Duration = Duration(30)
    # the readiness probe's period; /health/ready recomputes its checks at most this often
    readiness_probe_interval: Duration = Duration(5)
    # the timeout of llmkg-server --health-check and of the probes
    health_check_timeout: Duration = Duration(5)
    dependencies: HealthDependencies = msgspec.field(default_factory=HealthDependencies)


class AllocationSettings(Section, frozen=True):
    """llmkg: the whole section."""

    # below this many nodes, candidates come from an exact scan, not HNSW
    direct_threshold: NonNegative = 2_000
    # the best candidate at or above it becomes a new node's parent
    similarity_threshold: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)] = 0.7
    # neighbours listed in an allocation's answer
    neighbors: Neighbors = 5
    # the longest subject, predicate, object or search text, in characters
    max_text_length: TextLength = 4096
    # facts in one /api/v1/allocate/batch request at most
    max_batch: BatchSize = 1000


class Settings(Section, frozen=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    scalability: ScalabilitySettings = msgspec.field(default_factory=ScalabilitySettings)
    monitoring: MonitoringSettings = msgspec.field(default_factory=MonitoringSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    performance: PerformanceSettings = msgspec.field(default_factory=PerformanceSettings)
    security: SecuritySettings = msgspec.field(default_factory=SecuritySettings)
    health_checks: HealthSettings = msgspec.field(default_factory=HealthSettings)
    allocation: AllocationSettings = msgspec.field(default_factory=AllocationSettings)


# Validated, not yet acted on: the parts they configure do not exist yet (the configuration
# reference lists them).
INACTIVE = (
    "monitoring.enable_profiling",
    "monitoring.jaeger",
    "performance.io_threads",
    "performance.memory.arena_size",
    "performance.memory.large_allocation_threshold",
    "performance.memory.memory_pool_sizes",
)
# Acted on although their section is listed in INACTIVE.
ACTIVE_IN_INACTIVE = ("monitoring.jaeger.tags",)
