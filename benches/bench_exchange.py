"""Rates of ``llmkg-server import`` and ``export`` on an SQLite store, through the real
commands.

Run: ``python benches/bench_exchange.py [--facts 50000] [--dim 768] [--json PATH]``. A
seeded file of facts shaped like an export (ids in order, four in five with a parent on an earlier
line, no vectors) is imported into an empty store; the store is exported without and
with vectors, and the export with vectors is imported into a second store. For an import
the summary separates the placing of the facts (checking pass, store writes, built-in
embeddings) from the index build that follows it (the engine's start-up replay: HNSW
inserts, which dominate at 768 dimensions). Everything runs in a temporary folder.
``--json`` saves the numbers with the run's details.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from record import run_info, save

SERVER = [sys.executable, "-m", "llmkg.server.cli"]


def write_facts(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            parent = None
            if i and rng.random() < 0.8:
                j = rng.randrange(i)
                parent = {"id": j + 1, **triple(j)}
            line = {
                "id": i + 1,
                **triple(i),
                "confidence": round(rng.random(), 3),
                "parent": parent,
            }
            f.write(json.dumps(line) + "\n")


def triple(i: int) -> dict[str, str]:
    return {
        "subject": f"entity {i}",
        "predicate": f"relation {i % 40}",
        "object": f"thing {i % 997}",
    }


def run(data: Path, dim: int, *args: str) -> tuple[dict[str, Any], float]:
    env = {
        **os.environ,
        "LLMKG__STORAGE__DATA_DIRECTORY": str(data),
        "LLMKG__SCALABILITY__HNSW__DIMENSION": str(dim),
    }
    env.pop("LLMKG_CONFIG_PATH", None)
    env.pop("LLMKG_ENVIRONMENT", None)
    started = time.monotonic()
    done = subprocess.run([*SERVER, *args], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout), elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--facts", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--json", type=Path, help="save the numbers and the run's details here")
    args = p.parse_args()
    n, dim = args.facts, args.dim
    steps: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="llmkg-bench-exchange-") as tmp:
        root = Path(tmp)
        source = root / "facts.ndjson"
        write_facts(source, n)
        print(f"{n} facts, dim {dim}, file {source.stat().st_size / 2**20:.1f} MiB")

        s, wall = run(root / "a", dim, "import", str(source))
        print(imported("import (text)", n, s, wall))
        steps["import (text)"] = {**s, "wall_seconds": wall}
        for flag, name in (([], "text"), (["--embedding"], "vectors")):
            out = root / f"export-{name}.ndjson"
            s, wall = run(root / "a", dim, "export", str(out), *flag)
            size = out.stat().st_size / 2**20
            print(
                f"{'export (' + name + ')':18} {s['seconds']:7.2f}s"
                f" ({n / s['seconds']:8.0f} facts/s, {size:.1f} MiB); {wall:.1f}s in all"
            )
            steps[f"export ({name})"] = {**s, "wall_seconds": wall, "mib": size}
        s, wall = run(root / "b", dim, "import", str(root / "export-vectors.ndjson"))
        print(imported("import (vectors)", n, s, wall))
        steps["import (vectors)"] = {**s, "wall_seconds": wall}
    if args.json:
        run_ = run_info(["python", *sys.argv], f"{n:,} seeded facts, dim {dim}", quick=False)
        print(f"(saved: {save('exchange', {'facts': n, 'steps': steps}, run_, args.json)})")


def imported(label: str, n: int, s: dict[str, Any], wall: float) -> str:
    return (
        f"{label:18} {s['seconds']:7.2f}s placing ({n / s['seconds']:8.0f} facts/s)"
        f" + {s['index_seconds']:7.2f}s index ({n / s['index_seconds']:6.0f} facts/s);"
        f" {wall:.1f}s in all"
    )


if __name__ == "__main__":
    main()
