"""Index snapshots as the core writes them: a consistent view of an index that inserts are
changing meanwhile, published only after ``before_publish`` and only once the file is
complete, compressed or not, and failures that leave no file behind."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import llmkg
from llmkg.engine.snapshots import Snapshot, list_snapshots, read_snapshot, write_snapshot

DIM = 16
STORE = "ab" * 16
BATCH = 50
BATCHES = 60


def unlinked(index: llmkg.HnswIndex, ids: list[int]) -> list[int]:
    """The ids among ``ids`` that a link pass has not finished with: no level-0 link of
    their own, or in no other node's list. (Linked nodes are all reachable, though a
    search for a node's own vector may still miss one: HNSW is approximate, and a graph
    built by parallel batches now and then leaves a node with a single way in.)"""
    if len(ids) < 2:
        return []
    linked_to = {int(n) for i in ids for n in index.neighbors(i)}
    return [i for i in ids if len(index.neighbors(i)) == 0 or i not in linked_to]


def test_a_snapshot_taken_during_inserts_holds_whole_batches_all_searchable(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(BATCH * BATCHES, DIM)).astype(np.float32)
    index = llmkg.HnswIndex(dim=DIM)
    # The inserter stops halfway until a snapshot has been written of an index that it was
    # changing: at least one snapshot is then certainly taken between two of its batches.
    caught_midway = threading.Event()
    errors: list[BaseException] = []

    def insert() -> None:
        try:
            for b in range(BATCHES):
                ids = np.arange(b * BATCH, (b + 1) * BATCH, dtype=np.uint64)
                index.add(ids, vectors[b * BATCH : (b + 1) * BATCH])
                if b == BATCHES // 2:
                    assert caught_midway.wait(timeout=60), "no snapshot was taken midway"
        except BaseException as e:  # reported by the test's thread
            errors.append(e)

    inserter = threading.Thread(target=insert)
    inserter.start()
    published: list[Path] = []
    seq = 0
    while inserter.is_alive() and seq < 500:
        seq += 1
        folder = tmp_path / f"s{seq}"
        path = write_snapshot(folder, index, seq, 3, STORE, before_publish=lambda: None)
        published.append(path)
        if 0 < len(read_snapshot(Snapshot(path, seq, STORE))) < BATCH * BATCHES:
            caught_midway.set()
    inserter.join()
    assert not errors, errors
    assert caught_midway.is_set()

    partial = 0
    for seq, path in enumerate(published, 1):
        loaded = read_snapshot(Snapshot(path, seq, STORE))
        ids = [i for i in range(BATCH * BATCHES) if i in loaded]
        assert len(ids) == len(loaded)
        # Each add allocates its batch under the write lock and the snapshot freezes the
        # index between two of them: whole batches, in order, never part of one.
        assert ids == list(range(len(ids))) and len(ids) % BATCH == 0, (seq, len(ids))
        partial += 0 < len(ids) < BATCH * BATCHES
        # Every node it holds was linked in full: links of its own, and a way in.
        assert not unlinked(loaded, ids), f"snapshot {seq}: nodes not linked"
    assert partial >= 1


def test_publishing_waits_for_the_file_and_for_before_publish(tmp_path: Path) -> None:
    index = llmkg.HnswIndex(dim=DIM)
    vectors = np.random.default_rng(3).normal(size=(300, DIM)).astype(np.float32)
    index.add(np.arange(300, dtype=np.uint64), vectors)
    folder = tmp_path / "snapshots"
    seen: list[tuple[list[str], int]] = []

    def before_publish() -> None:
        # The file is complete on disk (the core fsynced it) and not yet published.
        (temp,) = [p for p in folder.iterdir() if p.name.startswith(".")]
        seen.append(([s.path.name for s in list_snapshots(folder)], temp.stat().st_size))

    sizes = {}
    for seq, level, suffix in [(5, 3, ".llmkg.zst"), (10, None, ".llmkg")]:
        seen.clear()
        path = write_snapshot(folder, index, seq, level, STORE, before_publish)
        assert path.name.endswith(suffix)
        assert len(seen) == 1 and path.name not in seen[0][0]
        assert seen[0][1] == path.stat().st_size
        assert path.read_bytes()[:4] == (b"\x28\xb5\x2f\xfd" if level else b"LLMK")
        assert len(read_snapshot(Snapshot(path, seq, STORE))) == 300
        sizes[level] = path.stat().st_size
    # These vectors barely compress; the links do.
    assert sizes[3] < sizes[None]


def test_a_failed_snapshot_leaves_no_file(tmp_path: Path) -> None:
    index = llmkg.HnswIndex(dim=DIM)
    index.add(np.arange(10, dtype=np.uint64), np.ones((10, DIM), dtype=np.float32))
    folder = tmp_path / "snapshots"

    def store_fails() -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        write_snapshot(folder, index, 1, 3, STORE, store_fails)
    assert list(folder.iterdir()) == []
    with pytest.raises(ValueError, match="level"):
        write_snapshot(folder, index, 1, 99, STORE, lambda: None)
    assert list(folder.iterdir()) == []
    # The core names the file it could not write, with its errno.
    target = tmp_path / "no-such-folder" / "index.llmkg"
    with pytest.raises(FileNotFoundError) as missing:
        index.write_file(target, 3)
    assert str(missing.value) == f"[Errno 2] No such file or directory: '{target}'"
