"""What tracing costs a search: the server's own time per search (the access log's
``duration_ms``) and the engine's, with tracing off, on and unsampled, and on and sampled,
against another checkout's code (the code before tracing) in the same run.

    git archive <commit> python | tar -x -C /tmp/base     # the code to compare with
    cp python/llmkg/_core.abi3.so /tmp/base/python/llmkg/
    PYTHONPATH=python python benches/bench_tracing.py --baseline /tmp/base/python

Each server holds 3,000 facts (random 64-dim unit vectors) and answers embedding searches
(k = 10, on the event loop) sent one at a time; the configurations take turns, round after
round (in reverse order every other round), so that the machine's drift falls on all
alike. Spans go to a receiver on loopback
(tests/otlplib.py). The engine's part: ``AllocationEngine.search`` in a process of each
checkout, without HTTP. Medians and 99th percentiles in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from otlplib import OtlpReceiver
from serverlib import Server

REPO = Path(__file__).resolve().parents[1]
DIM = 64
FACTS = 3000

ENGINE_SCRIPT = """
import sys, tempfile, time
from pathlib import Path
import numpy as np
from llmkg.engine import AllocationEngine, EngineConfig
rng = np.random.default_rng(7)
vectors = rng.normal(size=(%(facts)d, %(dim)d)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
with tempfile.TemporaryDirectory() as d:
    config = EngineConfig(dim=%(dim)d, data_directory=Path(d), durability="interval")
    with AllocationEngine(config) as engine:
        for i, v in enumerate(vectors):
            engine.allocate({"subject": f"s{i}", "predicate": "p", "object": f"o{i}",
                             "confidence": 0.5, "embedding": v.tolist()})
        engine.sync_index()
        out = []
        for i in range(%(searches)d):
            q = vectors[i %% len(vectors)]
            t = time.perf_counter()
            engine.search(embedding=q, k=10)
            out.append((time.perf_counter() - t) * 1e6)
print(" ".join(f"{x:.2f}" for x in out))
"""


def engine_times(python_path: str, searches: int) -> list[float]:
    script = ENGINE_SCRIPT % {"facts": FACTS, "dim": DIM, "searches": searches}
    env = {**os.environ, "PYTHONPATH": python_path}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return [float(x) for x in out.stdout.split()]


def server(tmp: Path, python_path: str, tracing: dict[str, str]) -> Server:
    env = {
        "PYTHONPATH": python_path,
        "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "false",
        **{f"LLMKG__MONITORING__{k.upper()}": v for k, v in tracing.items()},
    }
    s = Server(tmp, env, dim=DIM).start()
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(FACTS, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, FACTS, 1000):
        facts = [
            {"subject": f"s{i}", "predicate": "p", "object": f"o{i}", "confidence": 0.5,
             "embedding": vectors[i].tolist()}
            for i in range(start, start + 1000)
        ]  # fmt: skip
        assert s.post("/api/v1/allocate/batch", {"facts": facts}).status_code == 200
    return s


def search_durations(s: Server, queries: np.ndarray) -> list[float]:
    """The server's microseconds per search, from its access log."""
    before = len(s.logs().splitlines())
    for q in queries:
        response = s.post("/api/v1/search", {"query": {"embedding": q.tolist(), "k": 10}})
        assert response.status_code == 200
    deadline = time.monotonic() + 10
    while True:  # the last line is written just after its response is sent
        lines = [x for x in s.logs().splitlines()[before:] if '"route":"/api/v1/search"' in x]
        if len(lines) >= len(queries) or time.monotonic() > deadline:
            return [json.loads(line)["duration_ms"] * 1000 for line in lines]
        time.sleep(0.01)


def summary(name: str, times: list[float]) -> str:
    times = sorted(times)
    p99 = times[int(0.99 * (len(times) - 1))]
    return f"{name:34s} n={len(times):6d}  median {statistics.median(times):8.1f}  p99 {p99:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True, help="the python/ folder to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--searches", type=int, default=500, help="per round and server")
    args = parser.parse_args()
    here = str(REPO / "python")

    print("engine.search (no HTTP), microseconds")
    engine: dict[str, list[float]] = {"before tracing": [], "tracing off": []}
    for _ in range(args.rounds):
        engine["before tracing"] += engine_times(args.baseline, args.searches * 4)[100:]
        engine["tracing off"] += engine_times(here, args.searches * 4)[100:]
    for name, times in engine.items():
        print(summary(name, times))

    rng = np.random.default_rng(11)
    queries = rng.normal(size=(args.searches, DIM))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with OtlpReceiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        on = {"enable_tracing": "true", "otlp_endpoint": receiver.url}
        configs = {
            "before tracing": (args.baseline, {}),
            "tracing off": (here, {}),
            "tracing on, sample_rate 0": (here, {**on, "sample_rate": "0.0"}),
            "tracing on, sample_rate 0.1": (here, {**on, "sample_rate": "0.1"}),
            "tracing on, sample_rate 1": (here, {**on, "sample_rate": "1.0"}),
        }
        servers = {
            name: server(Path(tmp) / str(i), path, keys)
            for i, (name, (path, keys)) in enumerate(configs.items())
        }
        try:
            times: dict[str, list[float]] = {name: [] for name in servers}
            for r in range(args.rounds):
                turns = list(servers.items())
                for name, s in turns if r % 2 == 0 else reversed(turns):
                    times[name] += search_durations(s, queries)
        finally:
            for s in servers.values():
                s.stop()
        print("POST /api/v1/search, the server's time (access log), microseconds")
        for name, t in times.items():
            print(summary(name, t))
        print(f"spans received: {len(receiver.received())}")


if __name__ == "__main__":
    main()
