"""What an idle server holds in memory on embedded defaults: a small footprint, whatever
the configured capacities (the record caches, the index) that it has not used yet."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from serverlib import Server

# Resident memory of an idle `llmkg-server` on embedded defaults, empty data directory.
# Measured at about 66 MB (the interpreter and its imports, numpy and the extension's
# code); an empty 10M-entry L2 cache that sized its admission sketch up front alone took
# 257 MB more.
IDLE_RESIDENT_LIMIT = 80 * 2**20


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/PID/status")
def test_an_idle_server_on_embedded_defaults_stays_small(tmp_path: Path) -> None:
    server = Server(tmp_path)
    # The defaults, not serverlib's small test settings.
    server.env.pop("LLMKG__SCALABILITY__HNSW__DIMENSION")
    server.env.pop("LLMKG__PERFORMANCE__WORKER_THREADS")
    with server:
        assert server.proc is not None
        assert server.client.get("/health/ready").status_code == 200
        rss = resident_bytes(server.proc.pid)
    assert rss < IDLE_RESIDENT_LIMIT, f"idle server holds {rss / 2**20:.1f} MiB"
