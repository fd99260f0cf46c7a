"""Resident memory of an idle ``llmkg-server`` on embedded defaults (empty data directory),
read from /proc once it is ready; saved as benches/results/idle.json.

    .venv/bin/python benches/idle_memory.py

The test suite asserts the bound (tests/test_server_memory.py); this records the figure
for the headline table (benches/targets.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from record import REPO, run_info, save

sys.path.insert(0, str(REPO / "tests"))
from serverlib import Server  # (tests/ is not a package)


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        # The defaults, not serverlib's small test settings.
        server.env.pop("LLMKG__SCALABILITY__HNSW__DIMENSION")
        server.env.pop("LLMKG__PERFORMANCE__WORKER_THREADS")
        with server:
            assert server.proc is not None
            server.client.get("/health/ready").raise_for_status()
            rss = resident_bytes(server.proc.pid)
    run = run_info(["python", "benches/idle_memory.py"], "empty data directory", quick=False)
    path = save("idle", {"resident_bytes": rss}, run)
    print(f"idle resident memory: {rss / 2**20:.1f} MiB -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
