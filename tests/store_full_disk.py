"""Child process of the store fault tests: a store whose disk refuses writes. A file size
limit (RLIMIT_FSIZE, which binds root too) just above the database's size makes the log's
growth fail with EFBIG; writes must fail with StoreError, not hang, and once the limit is
lifted they must succeed again. Prints ``ack <id>`` per acknowledged write."""

from __future__ import annotations

import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

from llmkg.store import SqliteStore, StoreError


def main(directory: str) -> None:
    # Past the limit a write gets EFBIG instead of the signal that would end the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    store = SqliteStore(directory, retry_interval=0.01, write_timeout=30)
    vec = np.zeros(256, dtype=np.float32)
    first, _ = store.insert("s", "p", "first", 0.5, vec)
    print(f"ack {first.node_id}", flush=True)
    wal = Path(directory) / "llmkg.sqlite3-wal"
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size + 64 * 1024, hard))
    refused = None
    for i in range(10_000):
        try:
            record, _ = store.insert("s", "p", f"o{i}", 0.5, vec)
        except StoreError as e:
            refused = e
            break
        print(f"ack {record.node_id}", flush=True)
    assert refused is not None, "the size limit never stopped a write"
    print(f"refused {refused}", flush=True)
    # The writer goes on: each later write that needs the disk is refused too (a small
    # probe commit may still fit under the limit, so the store need not be failed).
    for i in range(3):
        try:
            record, _ = store.insert("s", "p", f"again{i}", 0.5, vec)
        except StoreError:
            continue
        print(f"ack {record.node_id}", flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    deadline = time.monotonic() + 30
    while not store.health()[0]:
        assert time.monotonic() < deadline, "the store did not recover"
        time.sleep(0.01)
    record, _ = store.insert("s", "p", "after", 0.5, vec)
    print(f"ack {record.node_id}", flush=True)
    print("recovered", flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1])
