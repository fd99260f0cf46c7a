"""Child process of the durability tests (kill -9, power loss, damage after an unclean
end): ``store_writer.py DIR DURABILITY SYNC_INTERVAL RUN`` writes facts into a
``SqliteStore`` from several threads, prints ``ready``, then each acknowledged write as
``ack <node id> <subject> <i> <monotonic time of its return>``, until it is killed.

``LLMKG_TEST_SYNCHRONOUS_OFF=1`` turns SQLite's syncs off (``PRAGMA synchronous=OFF`` on
the store's write connection): the missing fsync that the tests must catch."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from llmkg.store import SqliteStore


def main(directory: str, durability: str, sync_interval: float, run: int) -> None:
    store = SqliteStore(directory, durability=durability, sync_interval=sync_interval)
    if os.environ.get("LLMKG_TEST_SYNCHRONOUS_OFF") == "1":
        # The writer thread is idle (nothing queued yet): the connection is free to use.
        store._writer.execute("PRAGMA synchronous=OFF")
    lock = threading.Lock()
    print("ready", flush=True)

    def writer(t: int) -> None:
        for i in range(1_000_000):
            vec = np.full(8, t + i / 1e6, dtype=np.float32)
            record, _ = store.insert(f"run{run}-t{t}", "wrote", f"fact {i}", 0.5, vec)
            acked = time.monotonic()
            with lock:
                print(f"ack {record.node_id} run{run}-t{t} {i} {acked:.6f}", flush=True)

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
