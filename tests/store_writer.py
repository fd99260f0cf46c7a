"""Child process of the durability tests: writes facts from several threads into a store
and prints each acknowledged node id, until it is killed."""

from __future__ import annotations

import sys
import threading

import numpy as np

from llmkg.store import SqliteStore


def main(directory: str, durability: str, run: int) -> None:
    store = SqliteStore(directory, durability=durability, sync_interval=0.05)
    lock = threading.Lock()

    def writer(t: int) -> None:
        for i in range(1_000_000):
            vec = np.full(8, t + i / 1e6, dtype=np.float32)
            record, _ = store.insert(f"run{run}-t{t}", "wrote", f"fact {i}", 0.5, vec)
            with lock:
                print(f"ack {record.node_id} run{run}-t{t} {i}", flush=True)

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
