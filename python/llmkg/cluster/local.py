"""A local cluster in one command: PostgreSQL (optionally with a synchronous standby)
and N llmkg servers on loopback that follow it, described by ``DIR/cluster.json`` so that
tests, benchmarks and people can find, kill and restart each part.

``DIR`` holds everything: ``postgres/`` (the primary's data, socket and log),
``standby/`` (the same for the standby), ``postgres.dsn`` (the servers' DSN, mode 600:
it holds the password), and ``nodes/<name>/`` (a server's data directory and log).

The servers' DSN names both database servers, ``target_session_attrs=read-write``: libpq
tries them in turn and takes the one that accepts writes, so once the standby is
promoted the servers find it by themselves.

With ``partitions`` above 1 the graph is split: each server hosts the partitions
``llmkg.topology.assign`` gives it (zones a and b by turns, each partition in both),
serves them on its partition port, and finds its peers in a static list of every
server's partition port.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkg.cluster.postgres import (
    STANDBY_NAME,
    PostgresError,
    PostgresServer,
    alive,
    wait_gone,
)
from llmkg.topology import TopologyError, assign

DATABASE = "llmkg"
READY_TIMEOUT = 180.0  # seconds for every server to be ready
STOP_TIMEOUT = 30.0  # seconds a server has to drain after SIGTERM before SIGKILL
ZONES = ("a", "b")  # a partitioned cluster's servers are in these zones by turns
# PostgreSQL's default of 100 is short: a partitioned server holds a connection pool per
# hosted partition's engine and per partition it writes to (about 13 idle, up to 50).
MAX_CONNECTIONS = 400


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says why and where the
    logs are."""


@dataclass
class Ports:
    """Loopback ports: from ``base`` upwards (each checked free), or any free ones."""

    base: int | None

    def __post_init__(self) -> None:
        self._next = self.base

    def take(self) -> int:
        if self._next is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])
        while self._next < 65536:
            port, self._next = self._next, self._next + 1
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind(("127.0.0.1", port))
                return port
        raise ClusterError(f"no free port from {self.base} up")


def _servers(spec: dict[str, Any], root: Path) -> Iterator[tuple[str, PostgresServer]]:
    """The database servers ``spec`` describes: the primary, its standby, and after a
    promotion the former primary."""
    pg = spec["postgres"]
    password = (root / "postgres" / "password").read_text().strip()
    entries = (
        ("primary", pg),
        ("standby", pg.get("standby")),
        ("former", pg.get("former_primary")),
    )
    for name, entry in entries:
        if entry:
            data = Path(entry["data_dir"])
            yield name, PostgresServer(data, entry["port"], password, data.parent / "server.log")


def _node_env(
    root: Path, name: str, http: int, metrics: int, dim: int, environ: dict[str, str]
) -> dict[str, str]:
    node = root / "nodes" / name
    return {
        "LLMKG__SERVER__BIND_ADDRESS": "127.0.0.1",
        "LLMKG__SERVER__HTTP_PORT": str(http),
        "LLMKG__SERVER__METRICS_PORT": str(metrics),
        "LLMKG__STORAGE__BACKEND": "postgresql",
        "LLMKG__STORAGE__POSTGRESQL__DSN_FILE": str(root / "postgres.dsn"),
        "LLMKG__STORAGE__DATA_DIRECTORY": str(node / "data"),
        "LLMKG__STORAGE__BACKUP_DIRECTORY": str(node / "backups"),
        "LLMKG__SCALABILITY__HNSW__DIMENSION": str(dim),
        **environ,
    }


def start_node(node: dict[str, Any]) -> int:
    """Start a server as ``cluster.json`` describes it (``argv``, ``env``, ``log``); its
    pid. It runs in a session of its own: a Ctrl-C meant for the caller does not reach it."""
    env = {**os.environ, **node["env"]}
    env.pop("LLMKG_CONFIG_PATH", None)
    env.pop("LLMKG_ENVIRONMENT", None)
    with open(node["log"], "ab") as log:
        proc = subprocess.Popen(
            node["argv"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def wait_ready(nodes: list[dict[str, Any]], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(nodes)
    while waiting:
        for node in list(waiting):
            if not alive(node["pid"]):
                raise ClusterError(f"server {node['name']} exited; its log: {node['log']}")
            if _ready(node["url"]):
                waiting.remove(node)
        if waiting and time.monotonic() >= deadline:
            names = ", ".join(n["name"] for n in waiting)
            raise ClusterError(f"not ready within {timeout:g}s: {names} (see their logs)")
        if waiting:
            time.sleep(0.1)


def _write_spec(root: Path, spec: dict[str, Any]) -> None:
    path = root / "cluster.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    tmp.chmod(0o600)  # the DSN in it holds the database password
    tmp.replace(path)


def read_spec(root: Path) -> dict[str, Any]:
    try:
        spec: dict[str, Any] = json.loads((root / "cluster.json").read_text())
    except FileNotFoundError:
        raise ClusterError(f"no cluster in {root} (no cluster.json)") from None
    return spec


@dataclass(frozen=True)
class Layout:
    """What each server hosts. ``partitions`` 1: ``replicas`` servers, each a replica of
    the whole graph. More: ``nodes`` servers in zones a and b by turns, each partition on
    ``replicas`` of them, in both zones (``llmkg.topology.assign``)."""

    replicas: int = 3
    partitions: int = 1
    nodes: int | None = None

    def hosted(self) -> list[tuple[str | None, tuple[int, ...]]]:
        """(zone, partitions) of each server."""
        if self.replicas < 1:
            raise ClusterError("--replicas must be at least 1")
        if self.partitions < 1:
            raise ClusterError("--partitions must be at least 1")
        if self.partitions == 1:
            if self.nodes is not None:
                raise ClusterError("--nodes places partitions: give --partitions too")
            return [(None, (0,))] * self.replicas
        nodes = self.nodes if self.nodes is not None else 2 * self.replicas
        if nodes < self.replicas:
            raise ClusterError(f"--nodes must be at least --replicas ({self.replicas})")
        zones = [ZONES[i % len(ZONES)] for i in range(nodes)]
        try:
            placed = assign(self.partitions, self.replicas, zones)
        except TopologyError as e:
            raise ClusterError(str(e)) from None
        return list(zip(zones, placed, strict=True))


def _partition_env(
    layout: Layout, zone: str, hosted: tuple[int, ...], grpc: int, peers: list[str]
) -> dict[str, str]:
    return {
        "LLMKG__SCALABILITY__ENABLE_DISTRIBUTED": "true",
        "LLMKG__SCALABILITY__DISTRIBUTION__PARTITION_COUNT": str(layout.partitions),
        "LLMKG__SCALABILITY__DISTRIBUTION__REPLICATION_FACTOR": str(layout.replicas),
        "LLMKG__SCALABILITY__DISTRIBUTION__PARTITIONS": json.dumps(list(hosted)),
        "LLMKG__SCALABILITY__DISTRIBUTION__DISCOVERY__TYPE": "static",
        "LLMKG__SCALABILITY__DISTRIBUTION__DISCOVERY__PEERS": json.dumps(peers),
        "LLMKG__SERVER__GRPC_PORT": str(grpc),
        "LLMKG_ZONE": zone,
    }


def up(
    root: Path,
    replicas: int = 3,
    standby: bool = False,
    base_port: int | None = None,
    dim: int = 768,
    environ: dict[str, str] | None = None,
    server_args: list[str] | None = None,
    say: Callable[[str], None] = lambda line: None,
    partitions: int = 1,
    nodes: int | None = None,
) -> dict[str, Any]:
    """Start the cluster in ``root`` (absent or empty) and return what ``cluster.json``
    holds. ``environ`` (``LLMKG__`` variables) and ``server_args`` (e.g. ``--config``)
    go to every server. On a failure, whatever was started is stopped again."""
    layout = Layout(replicas, partitions, nodes)
    hosted = layout.hosted()
    root = root.resolve()
    if root.exists() and any(root.iterdir()):
        raise ClusterError(f"{root} is not empty: `cluster down --clean` it, or pick another")
    root.mkdir(parents=True, exist_ok=True)
    ports = Ports(base_port)
    password = secrets.token_urlsafe(18)
    primary = PostgresServer(
        root / "postgres" / "data", ports.take(), password, root / "postgres" / "server.log"
    )
    spec: dict[str, Any] = {
        "postgres": {
            "dsn": primary.dsn(DATABASE),
            "port": primary.port,
            "pid": None,
            "data_dir": str(primary.data_dir),
            "log": str(primary.log),
            "standby": None,
        },
        "nodes": [],
    }
    try:
        say(f"PostgreSQL primary on 127.0.0.1:{primary.port}")
        primary.init()
        primary.start(f"max_connections={MAX_CONNECTIONS}")
        spec["postgres"]["pid"] = primary.pid()
        _write_spec(root, spec)
        primary.psql(f"CREATE DATABASE {DATABASE}")
        hosts = f"127.0.0.1:{primary.port}"
        if standby:
            second = PostgresServer(
                root / "standby" / "data", ports.take(), password, root / "standby" / "server.log"
            )
            say(f"PostgreSQL synchronous standby on 127.0.0.1:{second.port}")
            second.base_backup_of(primary)
            second.start(f"cluster_name={STANDBY_NAME}", f"max_connections={MAX_CONNECTIONS}")
            spec["postgres"]["standby"] = {
                "dsn": second.dsn(DATABASE),
                "port": second.port,
                "pid": second.pid(),
                "data_dir": str(second.data_dir),
                "log": str(second.log),
            }
            _write_spec(root, spec)
            primary.require_sync_standby()
            hosts += f",127.0.0.1:{second.port}"
        dsn_file = root / "postgres.dsn"
        dsn_file.write_text(
            f"postgresql://postgres:{password}@{hosts}/{DATABASE}?target_session_attrs=read-write\n"
        )
        dsn_file.chmod(0o600)
        planned = [(zone, parts, ports.take(), ports.take()) for zone, parts in hosted]
        grpc_ports = [ports.take() for _ in planned] if partitions > 1 else []
        peers = [f"127.0.0.1:{port}" for port in grpc_ports]
        for i, (zone, parts, http, metrics) in enumerate(planned):
            name = f"node{i}"
            (root / "nodes" / name).mkdir(parents=True)
            env = _node_env(root, name, http, metrics, dim, environ or {})
            if zone is not None:
                env = {**env, **_partition_env(layout, zone, parts, grpc_ports[i], peers)}
            node: dict[str, Any] = {
                "name": name,
                "url": f"http://127.0.0.1:{http}",
                "metrics_url": f"http://127.0.0.1:{metrics}",
                # One partition: every server a replica of it, and no partition service.
                "grpc": peers[i] if peers else None,
                "partitions": list(parts),
                "zone": zone,
                "pid": None,
                "argv": [sys.executable, "-m", "llmkg.server.cli", *(server_args or [])],
                "env": env,
                "log": str(root / "nodes" / name / "server.log"),
            }
            node["pid"] = start_node(node)
            spec["nodes"].append(node)
            _write_spec(root, spec)
            say(f"{name} on {node['url']} (pid {node['pid']})")
        wait_ready(spec["nodes"])
    except BaseException:
        with contextlib.suppress(Exception):
            down(root)
        raise
    return spec


def stop_node(node: dict[str, Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (the server drains), then SIGKILL after ``timeout`` seconds; by pid, and
    only if that pid still runs this server (not a process that reused the number)."""
    pid = node.get("pid")
    if not pid or not alive(pid) or not _runs(pid, node["argv"]):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 10)


def _runs(pid: int, argv: list[str]) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return [part.decode(errors="replace") for part in cmdline if part] == argv


def down(root: Path, clean: bool = False) -> None:
    """Stop every server, then the database servers; with ``clean``, remove ``root``."""
    import shutil

    root = root.resolve()
    spec = read_spec(root)
    for node in spec["nodes"]:
        stop_node(node)
    errors = []
    for name, server in _servers(spec, root):
        try:
            server.stop()
        except PostgresError as e:  # pragma: no cover - pg_ctl's own failure
            errors.append(f"{name}: {e}")
    if errors:
        raise ClusterError("; ".join(errors))
    if clean:
        shutil.rmtree(root)


def restart_node(root: Path, name: str) -> dict[str, Any]:
    """Start server ``name`` again exactly as ``cluster.json`` describes it (stopping it
    first if it runs), and record its new pid there, so that ``down`` stops it too."""
    root = root.resolve()
    spec = read_spec(root)
    node: dict[str, Any] | None = next((n for n in spec["nodes"] if n["name"] == name), None)
    if node is None:
        raise ClusterError(f"no server {name!r} in {root / 'cluster.json'}")
    stop_node(node)
    node["pid"] = start_node(node)
    _write_spec(root, spec)
    return node


def promote(root: Path) -> dict[str, Any]:
    """Promote the standby (after the primary is lost): it becomes the primary, commits
    without a standby, and ``cluster.json`` says so. The servers find it by their DSN."""
    root = root.resolve()
    spec = read_spec(root)
    servers = dict(_servers(spec, root))
    if "standby" not in servers:
        raise ClusterError("this cluster has no standby")
    servers["standby"].promote()
    old = spec["postgres"]
    spec["postgres"] = {
        **old["standby"],
        "standby": None,
        "former_primary": {k: old[k] for k in ("dsn", "port", "pid", "data_dir", "log")},
    }
    _write_spec(root, spec)
    return spec
