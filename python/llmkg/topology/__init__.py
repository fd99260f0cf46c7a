"""Where the partitions live and how servers find each other: the placement of each
partition's replicas over servers and zones (:func:`assign`), this server's share of it
(:func:`hosted_partitions`), and peer discovery (``llmkg.topology.discovery``)."""

from llmkg.topology.assignment import (
    TopologyError,
    assign,
    hosted_by_pod,
    replicas,
    zone_groups,
    zone_major,
)
from llmkg.topology.server import LayoutError, hosted_partitions, parse_peer

__all__ = [
    "LayoutError",
    "TopologyError",
    "assign",
    "hosted_by_pod",
    "hosted_partitions",
    "parse_peer",
    "replicas",
    "zone_groups",
    "zone_major",
]
