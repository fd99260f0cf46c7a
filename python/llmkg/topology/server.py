"""This server's place in the topology, from its ``[scalability.distribution]`` settings:
the partitions it hosts, and the checks that make a layout that cannot be placed stop
start-up with the key at fault."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from llmkg.topology.assignment import TopologyError, hosted_by_pod

if TYPE_CHECKING:  # the config package imports this module: no import cycle at run time
    from llmkg.config.schema import DistributionSettings

KEY = "scalability.distribution"
# "host:port" or "[IPv6]:port"; the host a DNS name or an address, without a scheme.
_PEER = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})$")


class LayoutError(ValueError):
    """A distribution setting that cannot be used; ``key`` is its dotted config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.reason = key, message


def parse_peer(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` as (host, port); ValueError when it is neither."""
    match = _PEER.match(text)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{text!r} is not host:port (or [IPv6]:port) with a port 1-65535")
    return match["v6"] or match["host"], int(match["port"])


def hosted_partitions(dist: DistributionSettings) -> tuple[int, ...]:
    """The partitions this server hosts: ``partitions`` when set, else its share of the
    zones layout (``zones`` x ``pods_per_zone``, as :func:`~llmkg.topology.assign` places
    them) when ``zones`` is set, else ``partition_id`` alone. LayoutError names the key
    that makes it impossible."""
    if dist.partitions:
        return tuple(sorted(dist.partitions))
    if not dist.zones:
        return (dist.partition_id,)
    if not dist.zone:
        raise LayoutError(f"{KEY}.zone", f"must be one of zones {dist.zones} (set LLMKG_ZONE)")
    if dist.zone not in dist.zones:
        raise LayoutError(f"{KEY}.zone", f"must be one of zones {dist.zones}")
    if dist.pod_index >= dist.pods_per_zone:
        raise LayoutError(f"{KEY}.pod_index", f"must be below pods_per_zone ({dist.pods_per_zone})")
    try:
        return hosted_by_pod(
            dist.partition_count,
            dist.replication_factor,
            dist.zones,
            dist.pods_per_zone,
            dist.zone,
            dist.pod_index,
        )
    except TopologyError as e:
        raise LayoutError(f"{KEY}.replication_factor", str(e)) from None


def check(dist: DistributionSettings) -> None:
    """Every rule of the distribution settings that spans keys; LayoutError on the first
    broken one."""
    if dist.partition_id >= dist.partition_count:
        raise LayoutError(
            f"{KEY}.partition_id", f"must be below partition_count ({dist.partition_count})"
        )
    if len(set(dist.partitions)) != len(dist.partitions):
        raise LayoutError(f"{KEY}.partitions", "lists a partition twice")
    if any(p >= dist.partition_count for p in dist.partitions):
        raise LayoutError(
            f"{KEY}.partitions", f"must be below partition_count ({dist.partition_count})"
        )
    if "" in dist.zones or len(set(dist.zones)) != len(dist.zones):
        raise LayoutError(f"{KEY}.zones", "must be distinct, non-empty zone names")
    if dist.zones and len(dist.zones) * dist.pods_per_zone < dist.replication_factor:
        raise LayoutError(
            f"{KEY}.replication_factor",
            f"needs as many servers: zones x pods_per_zone is "
            f"{len(dist.zones) * dist.pods_per_zone}",
        )
    hosted_partitions(dist)
    discovery = dist.discovery
    for i, peer in enumerate(discovery.peers):
        try:
            parse_peer(peer)
        except ValueError as e:
            raise LayoutError(f"{KEY}.discovery.peers.{i}", str(e)) from None
    if discovery.refresh_interval <= 0:
        raise LayoutError(f"{KEY}.discovery.refresh_interval", "must be more than 0s")
