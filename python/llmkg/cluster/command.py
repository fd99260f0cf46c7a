"""``llmkg-server cluster up|down|promote``: the command line of the local cluster."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "cluster",
        help="a local cluster: PostgreSQL and N servers following it, on loopback",
    )
    verbs = c.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start it and write DIR/cluster.json")
    up.add_argument("--dir", required=True, type=Path, help="an absent or empty directory")
    up.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="servers (default 3); with --partitions: the servers of each partition (default 2)",
    )
    up.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="split the graph into this many partitions (default 1: no partitioning)",
    )
    up.add_argument(
        "--nodes",
        type=int,
        help="with --partitions: servers, in zones a and b by turns (default 2 x --replicas)",
    )
    up.add_argument(
        "--standby", action="store_true", help="a synchronous PostgreSQL standby as well"
    )
    up.add_argument(
        "--base-port",
        type=int,
        metavar="P",
        help="the first of the ports to use (default: any free ones)",
    )
    up.add_argument("--dim", type=int, default=768, help="embedding dimension (default 768)")
    down = verbs.add_parser("down", help="stop everything that `up` started, by pid")
    down.add_argument("--dir", required=True, type=Path)
    down.add_argument("--clean", action="store_true", help="then remove DIR")
    promote = verbs.add_parser(
        "promote", help="make the standby the primary (after the primary is lost)"
    )
    promote.add_argument("--dir", required=True, type=Path)


def server_args(args: argparse.Namespace) -> list[str]:
    """The config the servers start with: the one given to this command, by absolute
    path (the servers may run elsewhere)."""
    out = []
    if args.config:
        out += ["--config", str(Path(args.config).resolve())]
    if args.environment:
        out += ["--environment", args.environment]
    return out


def run(args: argparse.Namespace) -> int:
    from llmkg.cluster import ClusterError, PostgresError, down, promote, up

    def say(line: str) -> None:
        print(f"llmkg-server cluster: {line}", file=sys.stderr)

    try:
        if args.verb == "up":
            if args.base_port is not None and not 1024 <= args.base_port <= 65000:
                raise ClusterError("--base-port must be from 1024 to 65000")
            if not 1 <= args.dim <= 4096:
                raise ClusterError("--dim must be from 1 to 4096")
            replicas = (
                args.replicas if args.replicas is not None else (2 if args.partitions > 1 else 3)
            )
            spec = up(
                args.dir,
                replicas=replicas,
                partitions=args.partitions,
                nodes=args.nodes,
                standby=args.standby,
                base_port=args.base_port,
                dim=args.dim,
                server_args=server_args(args),
                say=say,
            )
            for node in spec["nodes"]:
                where = f"  partitions {node['partitions']} in zone {node['zone']}"
                say(
                    f"{node['name']}: {node['url']}  log {node['log']}"
                    + (where if node["zone"] else "")
                )
            say(f"PostgreSQL log: {spec['postgres']['log']}")
            say(f"ready; described in {args.dir.resolve() / 'cluster.json'}")
        elif args.verb == "down":
            down(args.dir, clean=args.clean)
            say("stopped" + (f"; {args.dir} removed" if args.clean else f"; logs in {args.dir}"))
        else:
            spec = promote(args.dir)
            say(f"the standby is the primary now, on 127.0.0.1:{spec['postgres']['port']}")
    except (ClusterError, PostgresError) as e:
        print(f"llmkg-server cluster {args.verb}: {e}", file=sys.stderr)
        return 1
    if args.verb != "down":
        print(json.dumps({"cluster": str(args.dir.resolve() / "cluster.json")}))
    return 0
