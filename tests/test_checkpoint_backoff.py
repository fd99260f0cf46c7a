"""A failing checkpoint (the disk full) backs off exponentially up to a cap, does not
serialize the index again while there is still no room, is counted, and recovers when
space returns. The test drives the checkpointer itself, on an injected clock."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg.engine import AllocationEngine, EngineConfig, checkpointing
from llmkg.engine import durability as engine_module
from llmkg.engine.checkpointing import MAX_BACKOFF, CheckpointTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failing_checkpoint_backs_off_without_reserializing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = {"full": False}
    serialized = []
    real_write, real_usage = engine_module.write_snapshot, shutil.disk_usage

    def write_snapshot(directory: Path, index: Any, seq: int, *args: Any, **kw: Any) -> Path:
        serialized.append(seq)
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(directory, index, seq, *args, **kw)

    def disk_usage(path: Any) -> Any:
        usage = real_usage(path)
        return usage._replace(free=0) if disk["full"] else usage

    monkeypatch.setattr(engine_module, "write_snapshot", write_snapshot)
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", disk_usage)
    config = EngineConfig(data_directory=tmp_path, dim=8, checkpoint_interval=1)
    engine = AllocationEngine(config)
    # The test is the checkpointer: the background thread is stopped (close still works).
    engine._stop.set()
    engine._background.join()
    engine._stop.clear()
    clock = Clock()
    engine.checkpoints = CheckpointTracker(clock=clock)
    try:
        for i in range(5):
            engine.allocate(
                {
                    "subject": "s",
                    "predicate": "p",
                    "object": f"o{i}",
                    "confidence": 0.5,
                    "embedding": np.ones(8) + i,
                }
            )
        engine._last_checkpoint = float("-inf")  # a timed checkpoint is due
        disk["full"] = True
        with pytest.raises(OSError):
            engine._checkpoint_if_due()
        assert len(serialized) == 1
        delays = []
        for _ in range(11):
            delay = engine.checkpoints.status().retry_in
            delays.append(delay)
            clock.now += delay - 0.001
            assert not engine._checkpoint_if_due(), "retried before the back-off ran out"
            clock.now += 0.001
            with pytest.raises(OSError) as still_full:
                engine._checkpoint_if_due()
            assert still_full.value.errno == errno.ENOSPC
        assert delays == [min(MAX_BACKOFF, 2.0**k) for k in range(11)]
        assert len(serialized) == 1, "the index was serialized again while the disk was full"
        status = engine.checkpoints.status()
        assert status.failing and status.failures_total == 12
        assert status.consecutive_failures == 12 and "no room" in (status.last_error or "")

        disk["full"] = False
        clock.now += status.retry_in
        assert engine._checkpoint_if_due()
        assert len(serialized) == 2
        status = engine.checkpoints.status()
        assert not status.failing and status.failures_total == 12 and status.retry_in == 0
        assert status.last_success > 0 and status.describe() == "ok"
    finally:
        engine.close()


def test_close_on_a_full_disk_still_closes_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine_module, "write_snapshot", full)
    config = EngineConfig(data_directory=tmp_path, dim=8, checkpoint_interval=0)
    engine = AllocationEngine(config)
    node = engine.allocate(
        {"subject": "s", "predicate": "p", "object": "o", "confidence": 0.5, "embedding": [1] * 8}
    ).node_id
    engine.close()  # the final checkpoint fails: logged, and the store closed anyway
    monkeypatch.undo()
    with AllocationEngine(config) as again:  # the directory's lock was released
        assert again.get(node) is not None
