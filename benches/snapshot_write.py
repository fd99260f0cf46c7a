"""What writing an index snapshot costs: the wall time of ``write_snapshot`` (serialize,
zstd, fsync, rename), the memory it needs beyond the loaded index (the rise of the
process's peak resident set, VmHWM, over the write), and how long it holds up a writer,
on an index of 100,000 nodes of dimension 384 (the 60,000 pypi-minilm-dev vectors and
40,000 noisy copies of them).

    PYTHONPATH=python python benches/snapshot_write.py [--nodes N] [--level L] [--json PATH]

The index is built once and kept (uncompressed, ``HnswIndex.save``) in
``$TMPDIR/llmkg-snapshot-bench/``; each run loads it in a fresh process, resets the peak
(``/proc/self/clear_refs``), writes one snapshot and reads the peak again. Then it writes
a second snapshot (``write_seconds_with_writer``) while another thread adds one node at a
time, as the engine's linker does: ``writer_max_ms`` is the longest of those adds (an add
waits for its write lock while a snapshot holds the index), beside ``add_median_ms``, an
add's time with no snapshot under way (the thread's first adds, which also grow the
index's arrays once, before the snapshot starts).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ann_data import data_dir
from record import run_info, save

from llmkg import HnswIndex
from llmkg.engine.snapshots import list_snapshots, read_snapshot, write_snapshot

STORE_ID = "0" * 32
MIB = 1 << 20


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def vectors(nodes: int) -> np.ndarray:
    base = np.load(data_dir() / "base.f16.npy").astype(np.float32)
    rng = np.random.default_rng(7)
    rows = [base[: min(nodes, len(base))]]
    while sum(len(r) for r in rows) < nodes:
        take = min(nodes - sum(len(r) for r in rows), len(base))
        noisy = base[rng.integers(0, len(base), take)] + rng.normal(0, 0.05, (take, base.shape[1]))
        rows.append((noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32))
    return np.ascontiguousarray(np.concatenate(rows))


def built_index(nodes: int, folder: Path) -> Path:
    path = folder / f"index-{nodes}.llmkg"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        data = vectors(nodes)
        started = time.perf_counter()
        index = HnswIndex(dim=data.shape[1], ef_construction=100)
        for start in range(0, nodes, 10_000):
            index.add(
                np.arange(start, min(start + 10_000, nodes), dtype=np.uint64),
                data[start : start + 10_000],
            )
        index.save(path)
        print(f"built {nodes} nodes in {time.perf_counter() - started:.0f}s: {path}")
    return path


def writer_hold(index: HnswIndex, out: Path, level: int | None, nodes: int) -> dict[str, float]:
    """Write a snapshot while another thread adds nodes one at a time (new ids from
    ``nodes`` on); the latencies of those adds, in ms."""
    base = np.load(data_dir() / "base.f16.npy").astype(np.float32)
    latencies: list[float] = []
    stop = threading.Event()

    def add_one_at_a_time() -> None:
        next_id = nodes
        while not stop.is_set():
            row = base[next_id % len(base)][None, :]
            started = time.perf_counter()
            index.add(np.array([next_id], dtype=np.uint64), row)
            latencies.append((time.perf_counter() - started) * 1000)
            next_id += 1

    writer = threading.Thread(target=add_one_at_a_time)
    writer.start()
    warm_up = 200  # past the growth of the arrays the first add after a load causes
    deadline = time.monotonic() + 300
    while len(latencies) < warm_up and writer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(latencies) >= warm_up, "the writer thread did not get going"
    before = len(latencies)
    started = time.perf_counter()
    try:
        write_snapshot(out, index, 2, level, STORE_ID, before_publish=lambda: None)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        writer.join()
    during = latencies[before:]
    return {
        "write_seconds_with_writer": round(seconds, 3),
        "add_median_ms": round(float(np.median(latencies[50:before])), 2),
        "writer_max_ms": round(max(during), 1),
        "adds_during_write": len(during),
    }


def main(nodes: int, level: int | None, json_path: Path | None) -> None:
    folder = Path(tempfile.gettempdir()) / "llmkg-snapshot-bench"
    index = HnswIndex.load(built_index(nodes, folder))
    gc.collect()
    out = folder / "snapshots"
    for old in out.glob("*"):
        old.unlink()
    rss_before = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from the RSS now
    started = time.perf_counter()
    path = write_snapshot(out, index, 1, level, STORE_ID, before_publish=lambda: None)
    seconds = time.perf_counter() - started
    peak_rise = status_kib("VmHWM") - rss_before
    written = next(s for s in list_snapshots(out) if s.path == path)
    assert len(read_snapshot(written)) == nodes
    result = {
        "nodes": nodes,
        "level": level,
        "index_memory_mib": round(index.memory_bytes() / MIB, 1),
        "write_seconds": round(seconds, 3),
        "peak_rise_mib": round(peak_rise / 1024, 1),
        "file_mib": round(path.stat().st_size / MIB, 1),
    }
    result |= writer_hold(index, out, level, nodes)
    print(result)
    if json_path is not None:
        run = run_info(sys.argv, "pypi-minilm-dev", quick=False)
        save("snapshot_write", {"snapshot_write": result}, run, json_path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--level", type=int, default=3, help="zstd level; -1: uncompressed")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    main(args.nodes, None if args.level < 0 else args.level, args.json)
