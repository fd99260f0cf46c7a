"""``llmkg-server topology``: this server's place in the topology, as its config makes it:
its zone, the partitions it hosts, the layout they come from, and (``--resolve``) the
peers discovery finds now. What an operator runs in a pod to see what it will serve:

    kubectl -n llmkg-production exec llmkg-scalable-allocation-a-0 -- \
        llmkg-server topology --resolve
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from llmkg.topology.assignment import assign, zone_major
from llmkg.topology.discovery import DnsDiscovery, from_settings
from llmkg.topology.server import hosted_partitions

if TYPE_CHECKING:
    from llmkg.config.schema import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser(
        "topology",
        help="print this server's zone and partitions, and the layout they come from",
    )
    t.add_argument(
        "--resolve",
        action="store_true",
        help="also look the peers up once as discovery would (exit 1 if that fails)",
    )


def describe(settings: Settings) -> dict[str, Any]:
    """What ``topology`` prints, without ``--resolve``."""
    dist = settings.scalability.distribution
    out: dict[str, Any] = {
        "distributed": settings.scalability.enable_distributed,
        "zone": dist.zone,
        "partitions": list(hosted_partitions(dist)),
        "partition_count": dist.partition_count,
        "replication_factor": dist.replication_factor,
    }
    if dist.zones and not dist.partitions:
        hosted = assign(
            dist.partition_count,
            dist.replication_factor,
            zone_major(dist.zones, dist.pods_per_zone),
        )
        out["pod_index"] = dist.pod_index
        per_zone = dist.pods_per_zone
        out["layout"] = {
            zone: [list(hosted[z * per_zone + i]) for i in range(per_zone)]
            for z, zone in enumerate(dist.zones)
        }
    d = dist.discovery
    found = from_settings(dist, lambda peers: None)
    if isinstance(found, DnsDiscovery):
        out["discovery"] = {"type": d.type, "name": found.host, "port": d.port}
    else:
        out["discovery"] = {"type": d.type, "peers": list(found.peers)}
    return out


def run(settings: Settings, args: argparse.Namespace) -> int:
    out = describe(settings)
    code = 0
    if args.resolve:
        found = from_settings(settings.scalability.distribution, lambda peers: None)
        if isinstance(found, DnsDiscovery):
            found.refresh()
            if found.failing:
                print(f"llmkg-server topology: {found.host} does not resolve", file=sys.stderr)
                code = 1
        out["peers"] = list(found.peers)
    print(json.dumps(out, indent=2))
    return code
