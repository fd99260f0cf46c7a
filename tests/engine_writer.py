"""Child process of the engine durability test: allocates facts (each with its own random
embedding) from several threads and prints every acknowledged node id, until killed."""

from __future__ import annotations

import sys
import threading

import numpy as np

from llmkg.engine import AllocationEngine, EngineConfig

DIM = 32


def embedding_of(run: int, t: int, i: int) -> np.ndarray:
    return np.random.default_rng([run, t, i]).normal(size=DIM).astype(np.float32)


def main(directory: str, run: int) -> None:
    config = EngineConfig(
        data_directory=directory, dim=DIM, direct_threshold=200, checkpoint_interval=1
    )
    engine = AllocationEngine(config)
    lock = threading.Lock()

    def writer(t: int) -> None:
        for i in range(1_000_000):
            fact = {
                "subject": f"run{run} thread{t}",
                "predicate": "wrote",
                "object": f"fact {i}",
                "confidence": 0.5,
                "embedding": embedding_of(run, t, i).tolist(),
            }
            result = engine.allocate(fact)
            with lock:
                print(f"ack {result.node_id} {run} {t} {i}", flush=True)

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
