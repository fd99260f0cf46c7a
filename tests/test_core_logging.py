"""The Rust core's log records reach Python's logging, and logging never deadlocks the
index: a record needs the GIL, and Python threads hold the GIL while they wait for the
index's lock, so the core must not log while it holds that lock."""

from __future__ import annotations

import subprocess
import sys

# Run in a child process: a deadlock holds the GIL, so the test's own process could not
# even time out; the parent can.
SCENARIO = """
import logging, sys, threading
import numpy as np
import llmkg
from llmkg._core import reset_log_levels

messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger("llmkg_core").addHandler(Keep())
logging.getLogger("llmkg_core").setLevel(logging.INFO)
reset_log_levels()

dim = 8
index = llmkg.HnswIndex(dim, m=4)
rng = np.random.default_rng(1)
ids = np.arange(1, 401, dtype=np.uint64)
index.add(ids, rng.random((400, dim), dtype=np.float32))
stop = threading.Event()

def upserts():
    # Re-adding ids tombstones their old slots: compactions follow, logged at info.
    for _ in range(60):
        index.add(ids, rng.random((400, dim), dtype=np.float32))
    stop.set()

def readers():
    # Each call takes the index's read lock with the GIL held.
    while not stop.is_set():
        assert index.dim == dim and len(index) == 400

threads = [threading.Thread(target=upserts)] + [threading.Thread(target=readers) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
compactions = [m for m in messages if m.startswith("compaction:")]
print(len(compactions))
sys.exit(0 if compactions else 3)
"""


def test_compaction_logs_without_deadlocking_gil_holding_readers() -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("deadlock between the core's logging and the index lock") from None
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
