"""The partition service's own cost: one call, and a fan-out over every partition, between
processes on loopback, with handlers that answer at once (no engine: what is measured is
gRPC, the codec and PeerPool's bookkeeping).

Run: ``python benches/bench_partition.py [--partitions 8] [--calls 2000] [--k 10]
[--dim 768] [--concurrency 1]``. One server process per partition (its own GIL, as pods
have) hosts one partition; the caller's event loop (uvloop) makes ``--calls`` calls,
``--concurrency`` at a time, and prints the median and p99 of a ``Search`` of one
partition, of a ``fan_out_search`` over all of them, and of a ``Get``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVE = """
import sys, threading
sys.path.insert(0, {tests!r})
from partitionlib import ScriptedHandlers
from llmkg.partition import Limits, PartitionServer
partition, dim = int(sys.argv[1]), int(sys.argv[2])
server = PartitionServer(ScriptedHandlers(f"pod-{{partition}}", [partition]), Limits(dim),
                         "127.0.0.1:0", workers=4)
server.start()
print(server.port, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.stop(None)
"""


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


async def measure(call: Any, calls: int, concurrency: int) -> dict[str, float]:
    samples: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)

    for _ in range(min(100, calls)):  # warm-up: channels connected, code paths hot
        await call()
    await asyncio.gather(*(one() for _ in range(calls)))
    return quantiles(samples)


async def bench(ports: list[int], args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from llmkg.partition import PeerPool, PeerSpec

    pool = PeerPool(
        partition_count=len(ports),
        peers=[PeerSpec(f"127.0.0.1:{p}", "", frozenset({i})) for i, p in enumerate(ports)],
    )
    query = np.random.default_rng(1).normal(size=args.dim).astype(np.float32)
    out = {
        "search_one_partition": await measure(
            lambda: pool.search(0, query, args.k), args.calls, args.concurrency
        ),
        "fan_out_search": await measure(
            lambda: pool.fan_out_search(query, args.k), args.calls, args.concurrency
        ),
        "get": await measure(lambda: pool.get(0, 1), args.calls, args.concurrency),
    }
    await pool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    script = SERVE.format(tests=str(ROOT / "tests"))
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), str(args.dim)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(args.partitions)
    ]
    try:
        ports = [int(s.stdout.readline()) for s in servers]  # type: ignore[union-attr]
        import uvloop

        result = uvloop.run(bench(ports, args))
        print(json.dumps({"args": vars(args), **result}, indent=2))
    finally:
        for server in servers:
            server.stdin.close()  # type: ignore[union-attr]
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
